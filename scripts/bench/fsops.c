// SPDX-License-Identifier: GPL-2.0
/*
 * fsops: metadata micro-benchmark helper for scripts/bench/run.sh.
 *
 *   fsops create DIR N   create N empty files DIR/f000000.. (O_CREAT|O_EXCL, close)
 *   fsops stat   DIR N   fstatat() each of them (path lookup + getattr)
 *   fsops unlink DIR N   unlinkat() each of them
 *   fsops warm MIB       fault in MIB MiB of anonymous memory, then free it
 *                        (prints nothing).  This machine is a VM whose freed
 *                        memory goes back to the host (free page reporting,
 *                        ~2 s after it is freed); the next allocation then
 *                        faults on the host too, which made a 1 GiB tmpfs
 *                        write 2-8x slower at random.  Rows that allocate a
 *                        lot warm just before their timed part, so they
 *                        measure the file system rather than the host.
 *
 * One process does all N operations, so the number measures the file
 * system, not fork/exec.  Prints the elapsed wall time in seconds on stdout;
 * exits non-zero (naming the file and errno) on the first failure.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int warm(const char *mib)
{
	size_t n = (size_t)strtoul(mib, NULL, 10) << 20;
	char *p;

	if (n == 0)
		return 0;
	p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (p == MAP_FAILED) {
		fprintf(stderr, "fsops: warm %s MiB: %s\n", mib, strerror(errno));
		return 1;
	}
	munmap(p, n);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "warm"))
		return warm(argv[2]);
	if (argc != 4) {
		fprintf(stderr, "usage: %s create|stat|unlink DIR N | warm MIB\n", argv[0]);
		return 2;
	}
	const char *op = argv[1];
	long n = strtol(argv[3], NULL, 10);
	int mode = !strcmp(op, "create") ? 0 : !strcmp(op, "stat") ? 1 : !strcmp(op, "unlink") ? 2 : -1;

	if (mode < 0 || n <= 0) {
		fprintf(stderr, "fsops: bad op '%s' or count '%s'\n", op, argv[3]);
		return 2;
	}
	int dfd = open(argv[2], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		fprintf(stderr, "fsops: open %s: %s\n", argv[2], strerror(errno));
		return 1;
	}

	char name[32];
	struct stat st;
	double t0 = now();
	for (long i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "f%06ld", i);
		int r;
		switch (mode) {
		case 0:
			r = openat(dfd, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
			if (r >= 0)
				r = close(r);
			break;
		case 1:
			r = fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW);
			break;
		default:
			r = unlinkat(dfd, name, 0);
			break;
		}
		if (r < 0) {
			fprintf(stderr, "fsops: %s %s/%s: %s\n", op, argv[2], name, strerror(errno));
			return 1;
		}
	}
	double t1 = now();
	printf("%.6f\n", t1 - t0);
	return 0;
}
