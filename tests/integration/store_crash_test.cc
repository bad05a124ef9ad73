// Crash test of the key store: a child process ingests, leases, reserves, delivers and commits
// under load and is killed with SIGKILL at a random point; the parent then reopens the store
// and checks that
//   - it opens without manual repair;
//   - every reservation the child acknowledged (reported through the pipe only after its
//     commit) is still there with the same bytes and the same blocks;
//   - no sequence number was ever handed out twice (leases and home-shard reservations,
//     across every restart), and the store resumes above all of them.
// KEYRAIL_SEED replays a run; KEYRAIL_CRASH_ITERATIONS sets the count (default 200).
#include "dataplane/errc.h"
#include "dataplane/store/key_store.h"
#include "tests/support/env.h"
#include "tests/unit/store_fixture.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace keyrail::dataplane {
namespace {

constexpr stream_id crash_stream{1};
constexpr sae_id master_sae{10};
constexpr sae_id slave_sae{20};
constexpr std::array<sae_id, 1> slaves{slave_sae};

std::string hex(const std::byte* p, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        s += digits[static_cast<unsigned>(p[i]) >> 4];
        s += digits[static_cast<unsigned>(p[i]) & 15u];
    }
    return s;
}

std::vector<std::byte> unhex(const std::string& s) {
    std::vector<std::byte> v(s.size() / 2);
    for (std::size_t i = 0; i < v.size(); ++i) {
        v[i] = static_cast<std::byte>(std::stoul(s.substr(2 * i, 2), nullptr, 16));
    }
    return v;
}

store_config crash_config(const std::string& dir, durability mode) {
    store_config c = test::small_config(dir);
    c.mode = mode;
    c.segment_chunks = 4;     // 504 blocks per segment
    c.capacity_blocks = 8000; // 16 segments
    c.reservations_max = 4096;
    c.lease_headroom = 32;
    // Compact often (the snapshot is about 1 KiB of window bits plus the live keys), written a
    // few hundred bytes per commit, so the kills land inside compactions too: while the next
    // generation is written, and before, during and after the meta that names it.
    c.journal_compact_bytes = 16 * 1024;
    c.journal_compact_step_bytes = 256;
    return c;
}

// One line per write(): pipe writes up to PIPE_BUF are atomic, so the parent sees whole lines.
void say(int fd, const std::string& line) {
    const std::string l = line + "\n";
    if (::write(fd, l.data(), l.size()) != static_cast<ssize_t>(l.size())) {
        ::_exit(3);
    }
}

struct unacked {
    key_id id;
    std::uint32_t bits;
    std::vector<std::byte> bytes;
    std::vector<seq_t> seqs;
    bool home;
};

[[noreturn]] void child_main(const std::string& dir, durability mode, std::uint64_t seed, int fd) {
    auto opened = key_store::open(crash_config(dir, mode));
    if (!opened) {
        say(fd, "E open " + opened.error().message());
        ::_exit(2);
    }
    auto found = (*opened)->find(crash_stream);
    if (!found) {
        found = (*opened)->create_stream(crash_stream, ownership{});
    }
    if (!found) {
        say(fd, "E stream " + found.error().message());
        ::_exit(2);
    }
    stream& s = **found;
    say(fd, "O");
    std::mt19937_64 rng(seed);
    std::vector<unacked> pending;
    std::vector<std::pair<key_id, std::uint32_t>> acked;
    lease cur{};
    seq_t cursor = 0;
    std::vector<std::byte> blocks(64 * 32);
    for (;;) {
        const auto op = rng() % 100;
        if (op < 25) {
            const std::uint64_t n = 1 + rng() % 64;
            for (std::size_t i = 0; i < n * 32; ++i) {
                blocks[i] = static_cast<std::byte>(rng());
            }
            auto r = s.append(std::span<const std::byte>(blocks.data(), n * 32));
            if (!r && r.error() != errc::store_full) {
                say(fd, "E append " + r.error().message());
            }
        } else if (op < 75) {
            const auto bits = static_cast<std::uint32_t>(8 * (1 + rng() % 64));
            const std::uint32_t nblocks = (bits / 8 + 31) / 32;
            unacked u{};
            u.bits = bits;
            u.bytes.resize(bits / 8);
            const reserve_request req{bits, master_sae, slaves};
            if (rng() % 2 == 0) {
                auto r = s.reserve(req, u.bytes);
                if (!r) {
                    continue;
                }
                u.id = r->id;
                u.home = true;
            } else {
                if (cur.end < cursor + nblocks) {
                    if (cursor < cur.end) {
                        s.release(cur, cursor);
                    }
                    auto l = s.grant(32);
                    if (!l) {
                        continue;
                    }
                    cur = *l;
                    cursor = l->first;
                    say(fd, "L " + std::to_string(l->first) + " " + std::to_string(l->end));
                    if (cur.end < cursor + nblocks) {
                        continue;
                    }
                }
                std::array<seq_t, 2> seqs{cursor, cursor + 1};
                cursor += nblocks;
                u.id = *random_key_id();
                u.home = false;
                auto r = s.reserve_specific(u.id, req, std::span<const seq_t>(seqs.data(), nblocks),
                                            u.bytes);
                if (!r) {
                    if (r.error() != errc::block_unavailable) {
                        say(fd, "E reserve_specific " + r.error().message());
                    }
                    continue;
                }
            }
            u.seqs.resize(4);
            u.seqs.resize(*s.key_seqs(u.id, u.seqs));
            pending.push_back(std::move(u));
        } else if (op < 92) {
            auto c = s.commit();
            if (!c) {
                say(fd, "E commit " + c.error().message());
                continue;
            }
            for (const auto& u : pending) {
                std::string line = "R " + hex(u.id.bytes.data(), 16) + " " +
                                   std::to_string(u.bits) + " " +
                                   hex(u.bytes.data(), u.bytes.size()) + " " +
                                   (u.home ? "1" : "0") + " " + std::to_string(u.seqs.size());
                for (seq_t q : u.seqs) {
                    line += " " + std::to_string(q);
                }
                say(fd, line);
                acked.emplace_back(u.id, u.bits);
            }
            pending.clear();
        } else if (!acked.empty()) {
            const std::size_t i = rng() % acked.size();
            const auto [id, bits] = acked[i];
            acked[i] = acked.back();
            acked.pop_back();
            const std::string idhex = hex(id.bytes.data(), 16);
            say(fd, "d " + idhex);
            std::vector<std::byte> out(bits / 8);
            auto d = s.deliver(id, slave_sae, out);
            if (!d) {
                say(fd, "E deliver " + d.error().message());
                continue;
            }
            if (auto c = s.commit(); c) {
                say(fd, "D " + idhex);
            }
        }
    }
}

struct tracked {
    std::uint32_t bits = 0;
    std::vector<std::byte> bytes;
    std::vector<seq_t> seqs;
    bool delivering = false; // "d" seen: delivered or not, both are fine
};

TEST(store_crash, kill9_never_loses_acknowledged_or_reuses_blocks) {
    test::temp_dir tmp;
    ASSERT_FALSE(tmp.path().empty());
    const std::uint64_t seed = test::seed("store_crash_test");
    const std::uint64_t iterations = test::env_u64("KEYRAIL_CRASH_ITERATIONS", 200);
    std::mt19937_64 rng(seed);
    std::map<std::string, tracked> keys; // by key ID hex
    // Keys whose delivery was committed (the newest few thousand): after any crash they must
    // stay gone, never readable (so never delivered) again.
    std::deque<std::string> delivered;
    constexpr std::size_t delivered_kept = 4096;
    const auto remember_delivered = [&](const std::string& id) {
        delivered.push_back(id);
        if (delivered.size() > delivered_kept) {
            delivered.pop_front();
        }
    };
    std::set<seq_t> handed_out;
    std::uint64_t acked_total = 0;
    std::uint64_t handed_max = 0;
    auto hand_out = [&](seq_t q, std::uint64_t iteration) {
        ASSERT_TRUE(handed_out.insert(q).second)
            << "seq " << q << " handed out twice (iteration " << iteration << ")";
        handed_max = std::max<std::uint64_t>(handed_max, q + 1);
    };

    for (std::uint64_t it = 0; it < iterations; ++it) {
        const durability mode = rng() % 8 == 0 ? durability::power : durability::process;
        const std::uint64_t child_seed = rng();
        const bool early = rng() % 8 == 0; // kill during open and recovery
        const auto delay_us = static_cast<long>(early ? rng() % 8000 : rng() % 25000);
        int fds[2];
        ASSERT_EQ(::pipe(fds), 0);
        const pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::close(fds[0]);
            child_main(tmp.path(), mode, child_seed, fds[1]);
        }
        ::close(fds[1]);
        std::string data;
        char buf[65536];
        if (!early) {
            // Wait until the child has opened the store, then let it run for the delay.
            while (data.find("O\n") == std::string::npos) {
                pollfd p{fds[0], POLLIN, 0};
                ASSERT_GT(::poll(&p, 1, 20000), 0) << "child did not open the store";
                const ssize_t n = ::read(fds[0], buf, sizeof buf);
                ASSERT_GT(n, 0) << "child exited early: " << data;
                data.append(buf, static_cast<std::size_t>(n));
            }
        }
        std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
        ::kill(pid, SIGKILL);
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        for (;;) {
            const ssize_t n = ::read(fds[0], buf, sizeof buf);
            if (n <= 0) {
                break;
            }
            data.append(buf, static_cast<std::size_t>(n));
        }
        ::close(fds[0]);
        ASSERT_TRUE(WIFSIGNALED(status)) << "child ended by itself: " << data;

        std::istringstream lines(data);
        std::string line;
        while (std::getline(lines, line)) {
            if (lines.eof()) {
                break; // a partial last line cannot happen with atomic writes, but be strict
            }
            std::istringstream in(line);
            std::string kind;
            in >> kind;
            if (kind == "E") {
                FAIL() << "child error: " << line << " (iteration " << it << ")";
            } else if (kind == "L") {
                seq_t first = 0;
                seq_t end = 0;
                in >> first >> end;
                for (seq_t q = first; q < end; ++q) {
                    hand_out(q, it);
                }
            } else if (kind == "R") {
                std::string id;
                std::string bytes;
                int home = 0;
                std::size_t n = 0;
                tracked t;
                in >> id >> t.bits >> bytes >> home >> n;
                t.bytes = unhex(bytes);
                t.seqs.resize(n);
                for (auto& q : t.seqs) {
                    in >> q;
                    if (home == 1) {
                        hand_out(q, it);
                    }
                }
                ASSERT_EQ(keys.count(id), 0u);
                keys[id] = std::move(t);
                ++acked_total;
            } else if (kind == "d") {
                std::string id;
                in >> id;
                keys[id].delivering = true;
            } else if (kind == "D") {
                std::string id;
                in >> id;
                keys.erase(id);
                remember_delivered(id);
            }
        }

        // Restart: the store must open as is and still hold every acknowledged key.
        auto opened = key_store::open(crash_config(tmp.path(), durability::process));
        ASSERT_TRUE(opened.has_value()) << opened.error().message() << " (iteration " << it << ")";
        auto found = (*opened)->find(crash_stream);
        if (!found && found.error() == errc::unknown_stream) {
            ASSERT_TRUE(keys.empty());
            continue; // killed before the stream was created
        }
        ASSERT_TRUE(found.has_value()) << found.error().message();
        stream& s = **found;
        ASSERT_GE(s.status().next_lease, handed_max) << "iteration " << it;
        for (const std::string& hex : delivered) {
            key_id id;
            const auto raw = unhex(hex);
            std::memcpy(id.bytes.data(), raw.data(), 16);
            std::vector<std::byte> out(key_bits_max / 8);
            auto again = s.read_key(id, out);
            ASSERT_FALSE(again.has_value()) << "delivered key back after a crash: " << hex
                                            << " (iteration " << it << ")";
            ASSERT_EQ(again.error(), errc::unknown_key) << hex;
        }
        std::vector<std::string> delivered_now;
        for (auto it_key = keys.begin(); it_key != keys.end();) {
            key_id id;
            const auto raw = unhex(it_key->first);
            std::memcpy(id.bytes.data(), raw.data(), 16);
            tracked& t = it_key->second;
            std::vector<std::byte> out(t.bits / 8);
            auto r = s.read_key(id, out);
            if (t.delivering && !r && r.error() == errc::unknown_key) {
                it_key = keys.erase(it_key);
                continue;
            }
            ASSERT_TRUE(r.has_value()) << "acknowledged key lost: " << it_key->first << " "
                                       << r.error().message() << " (iteration " << it << ")";
            ASSERT_EQ(out, t.bytes) << "acknowledged key changed: " << it_key->first;
            std::vector<seq_t> seqs(4);
            seqs.resize(*s.key_seqs(id, seqs));
            ASSERT_EQ(seqs, t.seqs);
            t.delivering = false;
            // Keep the store from filling: deliver most verified keys now.
            if (rng() % 4 != 0) {
                ASSERT_TRUE(s.deliver(id, slave_sae, out).has_value());
                delivered_now.push_back(it_key->first);
                it_key = keys.erase(it_key);
            } else {
                ++it_key;
            }
        }
        ASSERT_TRUE(s.commit().has_value());
        for (const std::string& id : delivered_now) {
            remember_delivered(id);
        }
    }
    std::printf("store_crash_test: %llu iterations, %llu acknowledged reservations, %zu seqs "
                "handed out\n",
                static_cast<unsigned long long>(iterations),
                static_cast<unsigned long long>(acked_total), handed_out.size());
    EXPECT_GT(acked_total, iterations);
}

} // namespace
} // namespace keyrail::dataplane
