// Runs mlkem_ct_probe under valgrind memcheck (see that file): the probe must finish without a
// single report about secret-dependent jumps or addresses, and its negative control, which
// branches on a secret on purpose, must be reported, proving the check can fail.
// The probe is built without sanitizers (memcheck and ASan cannot share a process), so this
// test runs in every preset, the ASan+UBSan debug preset of CI included.
#include <cstdlib>
#include <string>

#include <sys/wait.h>

#include <gtest/gtest.h>

namespace {

int run_under_valgrind(const std::string& args) {
    const char* probe = std::getenv("KEYRAIL_MLKEM_CT_PROBE");
    EXPECT_NE(probe, nullptr) << "KEYRAIL_MLKEM_CT_PROBE is not set";
    if (probe == nullptr) {
        return -1;
    }
    const std::string cmd = "valgrind --error-exitcode=1 --track-origins=yes "
                            "--exit-on-first-error=no -q '" +
                            std::string(probe) + "' " + args;
    const int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST(mlkem_ct, valgrind_present) {
    ASSERT_EQ(std::system("valgrind --version > /dev/null 2>&1"), 0)
        << "valgrind is required (tools/setup.sh installs it)";
}

TEST(mlkem_ct, no_secret_dependent_branch_or_index) {
    EXPECT_EQ(run_under_valgrind(""), 0);
}

TEST(mlkem_ct, negative_control_is_reported) {
    EXPECT_EQ(run_under_valgrind("--negative-control"), 1);
}

} // namespace
