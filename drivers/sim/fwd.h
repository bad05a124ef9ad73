#pragma once
// Forward declarations of the simulated QKD link driver.

namespace keyrail::drivers::sim {

struct sim_link_config;
class sim_link;

} // namespace keyrail::drivers::sim
