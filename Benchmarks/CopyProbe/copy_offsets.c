/* How fast the kernel copies 64 KB between a page-cache page and a user buffer, for each distance
 * (destination minus source, within a 4 KB page) between them. `pread` copies page -> user
 * (`copy_to_iter`, as a socket read does), `pwrite` copies user -> page (`copy_from_iter`, as a
 * socket write does). On this machine's AMD EPYC (Zen 3) cores both run at a sixth of their speed
 * when the destination sits 1-31 bytes past the source (Docs/Benchmarks.md).
 *
 *   gcc -O2 -o /tmp/copy_offsets Benchmarks/CopyProbe/copy_offsets.c && /tmp/copy_offsets
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define COPY (64 * 1024)
#define ROUNDS 2000

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* GB/s of `ROUNDS` copies; `write_side` picks pwrite over pread. */
static double rate(int fd, char *buffer, int write_side) {
    double start = seconds_now();
    long total = 0;
    for (int i = 0; i < ROUNDS; i++) {
        ssize_t n = write_side ? pwrite(fd, buffer, COPY, 0) : pread(fd, buffer, COPY, 0);
        if (n > 0) total += n;
    }
    return (double)total / (seconds_now() - start) / 1e9;
}

int main(void) {
    char path[] = "/tmp/copy-offsets-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) { perror("mkstemp"); return 1; }
    unlink(path);
    char *allocation = aligned_alloc(4096, COPY + 8192);
    for (int i = 0; i < COPY + 8192; i++) allocation[i] = (char)i;
    if (pwrite(fd, allocation, COPY, 0) != COPY) { perror("pwrite"); return 1; }

    /* The file's page starts at offset 0, so a buffer `d` bytes into a page reads at distance d
     * and writes at distance -d (4096 - d). */
    const int offsets[] = {0, 8, 16, 24, 32, 48, 64, 2048, 4064, 4072, 4080, 4088};
    printf("buffer offset  read: distance  GB/s   write: distance  GB/s\n");
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        int d = offsets[i];
        double r = rate(fd, allocation + d, 0), w = rate(fd, allocation + d, 1);
        printf("%13d  %14d  %5.1f  %15d  %5.1f\n", d, d, r, (4096 - d) % 4096, w);
    }
    free(allocation);
    close(fd);
    return 0;
}
