# Shared CMake helpers. Flags go on our targets only, never globally.

# keyrail_target_defaults(target): C++20, strict warnings as errors, sanitizers of the preset.
function(keyrail_target_defaults target)
    target_compile_features(${target} PUBLIC cxx_std_20)
    target_compile_options(${target} PRIVATE
        -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wimplicit-fallthrough -Werror)
    if(KEYRAIL_SANITIZE)
        target_compile_options(${target} PUBLIC -fsanitize=${KEYRAIL_SANITIZE}
            -fno-omit-frame-pointer -fno-sanitize-recover=all)
        target_link_options(${target} PUBLIC -fsanitize=${KEYRAIL_SANITIZE})
        target_compile_definitions(${target} PUBLIC KEYRAIL_DEBUG_CHECKS=1)
    endif()
    if(CMAKE_BUILD_TYPE STREQUAL "Debug")
        target_compile_definitions(${target} PUBLIC KEYRAIL_DEBUG_CHECKS=1)
    endif()
    # libFuzzer only learns from code built with coverage instrumentation, so under the fuzz
    # preset every one of our targets carries it; fuzz binaries add the fuzzer main on top.
    if(KEYRAIL_FUZZ)
        target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link)
    endif()
endfunction()

# keyrail_link_allocator(target): a binary links jemalloc unless sanitizers are on.
function(keyrail_link_allocator target)
    if(KEYRAIL_JEMALLOC)
        target_link_libraries(${target} PRIVATE PkgConfig::JEMALLOC)
    endif()
endfunction()

# keyrail_add_to_tiers(target label...): target becomes part of the build target tier_<label>,
# so a preset can build just what one test tier runs (tools/test.sh: tsan builds tier_stress).
function(keyrail_add_to_tiers target)
    foreach(label ${ARGN})
        if(NOT TARGET tier_${label})
            add_custom_target(tier_${label})
        endif()
        add_dependencies(tier_${label} ${target})
    endforeach()
endfunction()

# keyrail_add_test(NAME n SOURCES ... LIBS ... LABELS ... [TIMEOUT s] [ARGS ...] [ENV ...])
# The only way to add a test: one executable, one ctest entry, labels for the tier.
function(keyrail_add_test)
    cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS;ARGS;ENV" ${ARGN})
    if(NOT T_TIMEOUT)
        set(T_TIMEOUT 120)
    endif()
    add_executable(${T_NAME} ${T_SOURCES})
    keyrail_target_defaults(${T_NAME})
    target_include_directories(${T_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${T_NAME} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
    add_test(NAME ${T_NAME} COMMAND ${T_NAME} ${T_ARGS})
    set_tests_properties(${T_NAME} PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT})
    keyrail_add_to_tiers(${T_NAME} ${T_LABELS})
    if(T_ENV)
        set_tests_properties(${T_NAME} PROPERTIES ENVIRONMENT "${T_ENV}")
    endif()
endfunction()

# keyrail_add_fuzz(NAME n SOURCES ... LIBS ... [CORPUS dir] [RUNS n] [TIMEOUT s])
# With KEYRAIL_FUZZ (clang) the target is a libFuzzer binary; otherwise it links the
# standalone driver tests/fuzz/fuzz_main.cc, which replays the corpus and then runs seeded
# random and mutated inputs, so every preset exercises the target. Label: fuzz.
# RUNS sets the standalone driver's generated inputs (KEYRAIL_FUZZ_RUNS, default 20000) for
# targets whose one input costs milliseconds under the sanitizers.
function(keyrail_add_fuzz)
    cmake_parse_arguments(F "" "NAME;CORPUS;TIMEOUT;RUNS" "SOURCES;LIBS" ${ARGN})
    if(NOT F_TIMEOUT)
        set(F_TIMEOUT 300)
    endif()
    if(NOT F_CORPUS)
        set(F_CORPUS ${PROJECT_SOURCE_DIR}/tests/fuzz/corpus/${F_NAME})
    endif()
    if(KEYRAIL_FUZZ)
        add_executable(${F_NAME} ${F_SOURCES})
        target_compile_options(${F_NAME} PRIVATE -fsanitize=fuzzer)
        target_link_options(${F_NAME} PRIVATE -fsanitize=fuzzer)
        # New inputs go to a directory in the build tree (libFuzzer writes to the first
        # corpus directory it is given); the committed corpus is only read.
        set(found ${CMAKE_CURRENT_BINARY_DIR}/corpus_found/${F_NAME})
        file(MAKE_DIRECTORY ${found})
        set(runner ${F_NAME} -max_total_time=20 -timeout=5 ${found} ${F_CORPUS})
    else()
        add_executable(${F_NAME} ${F_SOURCES} ${PROJECT_SOURCE_DIR}/tests/fuzz/fuzz_main.cc)
        set(runner ${F_NAME} ${F_CORPUS})
    endif()
    keyrail_target_defaults(${F_NAME})
    target_include_directories(${F_NAME} PRIVATE ${PROJECT_SOURCE_DIR})
    target_link_libraries(${F_NAME} PRIVATE ${F_LIBS})
    add_test(NAME ${F_NAME} COMMAND ${runner})
    set_tests_properties(${F_NAME} PROPERTIES LABELS fuzz TIMEOUT ${F_TIMEOUT})
    keyrail_add_to_tiers(${F_NAME} fuzz)
    if(F_RUNS AND NOT KEYRAIL_FUZZ)
        set_tests_properties(${F_NAME} PROPERTIES ENVIRONMENT KEYRAIL_FUZZ_RUNS=${F_RUNS})
    endif()
endfunction()
