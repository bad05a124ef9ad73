#include "engine/topology.h"

#include <pthread.h>
#include <sched.h>

#include <hwloc.h>

#include "engine/errc.h"

namespace keyrail::engine {

result<std::vector<core>> discover_cores() noexcept {
    hwloc_topology_t topo = nullptr;
    if (hwloc_topology_init(&topo) != 0) {
        return fail(errc::topology);
    }
    // hwloc 2 restricts the topology to the cpuset this process is allowed to use, so a
    // container or taskset limit is respected without extra work.
    if (hwloc_topology_load(topo) != 0) {
        hwloc_topology_destroy(topo);
        return fail(errc::topology);
    }
    std::vector<core> cores;
    const int count = hwloc_get_nbobjs_by_type(topo, HWLOC_OBJ_CORE);
    for (int i = 0; i < count; ++i) {
        hwloc_obj_t obj = hwloc_get_obj_by_type(topo, HWLOC_OBJ_CORE, static_cast<unsigned>(i));
        if (obj == nullptr || obj->cpuset == nullptr) {
            continue;
        }
        core c;
        unsigned cpu = 0;
        hwloc_bitmap_foreach_begin(cpu, obj->cpuset) {
            c.cpus.push_back(cpu);
        }
        hwloc_bitmap_foreach_end();
        if (!c.cpus.empty()) {
            cores.push_back(std::move(c));
        }
    }
    hwloc_topology_destroy(topo);
    if (cores.empty()) {
        return fail(errc::topology);
    }
    return cores;
}

result<void> pin_current_thread(const core& c) noexcept {
    cpu_set_t set;
    CPU_ZERO(&set);
    for (unsigned cpu : c.cpus) {
        if (cpu < CPU_SETSIZE) {
            CPU_SET(cpu, &set);
        }
    }
    const int rc = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (rc != 0) {
        return fail(errno_error(rc));
    }
    return {};
}

} // namespace keyrail::engine
