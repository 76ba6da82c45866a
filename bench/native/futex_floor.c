/* The platform floor of a futex hand-off, in C: what the kernel and the (virtual) CPUs
 * of this machine allow before any Python runs. Same shape as the Python floor in
 * bench/suites/shm.py: one writer stores a timestamp and a counter in shared memory and
 * wakes every reader with one FUTEX_WAKE; each reader takes the clock when it sees the
 * counter move.
 *
 *   futex_floor READERS PACKETS PACE_US
 *
 * stdout: first line "cpu_us_per_wake <readers' CPU per packet seen>", then one
 * hand-off latency in nanoseconds per (reader, packet). */
#define _GNU_SOURCE
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void *shared(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

static void reader(uint32_t *word, const uint64_t *stamps, uint64_t *out, uint32_t packets) {
    uint32_t last = 0;
    while (last < packets) {
        uint32_t seq = __atomic_load_n(word, __ATOMIC_ACQUIRE);
        if (seq == last) {
            syscall(SYS_futex, word, FUTEX_WAIT, seq, NULL, NULL, 0);
            continue;
        }
        uint64_t t = now_ns();
        for (uint32_t k = last; k < seq; k++) /* a late reader pays for every packet */
            out[k] = t - stamps[k];
        last = seq;
    }
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s READERS PACKETS PACE_US\n", argv[0]);
        return 2;
    }
    int readers = atoi(argv[1]);
    uint32_t packets = (uint32_t)atoi(argv[2]);
    useconds_t pace = (useconds_t)atoi(argv[3]);
    uint32_t *word = shared(sizeof *word);
    uint64_t *stamps = shared(sizeof *stamps * packets);
    uint64_t *lat = shared(sizeof *lat * packets * (size_t)readers);
    for (int r = 0; r < readers; r++) {
        if (fork() == 0) {
            reader(word, stamps, lat + (size_t)r * packets, packets);
            _exit(0);
        }
    }
    usleep(300000); /* every reader blocked before the first packet */
    for (uint32_t i = 0; i < packets; i++) {
        usleep(pace);
        stamps[i] = now_ns();
        __atomic_store_n(word, i + 1, __ATOMIC_RELEASE);
        syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
    }
    while (wait(NULL) > 0) {
    }
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    double cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 + ru.ru_utime.tv_usec +
                    ru.ru_stime.tv_usec;
    printf("cpu_us_per_wake %.2f\n", cpu_us / ((double)packets * readers));
    for (size_t k = 0; k < (size_t)packets * readers; k++)
        printf("%llu\n", (unsigned long long)lat[k]);
    return 0;
}
