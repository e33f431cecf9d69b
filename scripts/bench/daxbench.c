// SPDX-License-Identifier: GPL-2.0
/*
 * daxbench: the guest side of scripts/bench/dax.sh (virtio-fs with and
 * without the DAX window).  Static, so it runs in the busybox initramfs.
 *
 *   daxbench seqread  FILE           read(2) the whole file, 1 MiB at a time
 *   daxbench randread FILE SECONDS   pread(2) of 4 KiB at random 4 KiB-aligned
 *                                    offsets for SECONDS
 *   daxbench mmapseq  FILE           mmap(MAP_SHARED) the file, copy it out a
 *                                    page at a time, in order
 *   daxbench mmaprand FILE SECONDS   the same mapping, 4 KiB pages copied out
 *                                    at random for SECONDS
 *   daxbench seqwrite FILE MIB       overwrite the first MIB MiB in place
 *                                    (no O_TRUNC), 1 MiB writes, then fsync
 *
 * In place, because a write that extends a file does not go through the
 * window (fs/fuse/dax.c sends it as FUSE_WRITE); the fsync is timed too.
 * The random offsets come from a fixed seed, so every configuration reads
 * the same sequence of pages.
 *
 * Prints one line, "value=V unit=MiB/s|IOPS bytes=B ops=N secs=T", and
 * exits 0; on any failure names the call and errno on stderr and exits 1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096
#define CHUNK (1 << 20)

static const char *path;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int fail(const char *what)
{
	fprintf(stderr, "daxbench: %s %s: %s\n", what, path, strerror(errno));
	return 1;
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	/* xorshift64: enough to scatter page numbers, and reproducible. */
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

/* A byte of every copied page goes here, so no copy can be optimised out. */
static volatile unsigned char sink;

static int report(double bytes, double ops, double secs, int iops)
{
	if (secs <= 0)
		secs = 1e-9;
	printf("value=%.2f unit=%s bytes=%.0f ops=%.0f secs=%.3f\n",
	       iops ? ops / secs : bytes / secs / (1 << 20), iops ? "IOPS" : "MiB/s", bytes, ops,
	       secs);
	return 0;
}

static int open_size(int flags, off_t *size)
{
	struct stat st;
	int fd = open(path, flags);

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
	*size = st.st_size;
	return fd;
}

static int seqread(void)
{
	static char buf[CHUNK];
	double t0, bytes = 0, ops = 0;
	off_t size;
	ssize_t n;
	int fd = open_size(O_RDONLY, &size);

	if (fd < 0)
		return fail("open");
	t0 = now();
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		bytes += n;
		ops++;
	}
	if (n < 0)
		return fail("read");
	if (bytes != size) {
		fprintf(stderr, "daxbench: read %.0f of %lld bytes of %s\n", bytes, (long long)size,
			path);
		return 1;
	}
	return report(bytes, ops, now() - t0, 0);
}

/* Random page numbers until SECONDS are up; the clock is read every 16 ops. */
static int randread(double seconds, int use_mmap)
{
	static char buf[PAGE];
	double t0, t, ops = 0;
	off_t size, pages;
	char *map = NULL;
	int fd = open_size(O_RDONLY, &size);

	if (fd < 0)
		return fail("open");
	pages = size / PAGE;
	if (pages == 0) {
		fprintf(stderr, "daxbench: %s is smaller than a page\n", path);
		return 1;
	}
	if (use_mmap) {
		map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
		if (map == MAP_FAILED)
			return fail("mmap");
	}
	t0 = t = now();
	while (t - t0 < seconds) {
		for (int i = 0; i < 16; i++) {
			off_t off = (off_t)(rnd() % (uint64_t)pages) * PAGE;

			if (map) {
				memcpy(buf, map + off, PAGE);
			} else if (pread(fd, buf, PAGE, off) != PAGE) {
				return fail("pread");
			}
			sink ^= buf[i * 7];
			ops++;
		}
		t = now();
	}
	return report(ops * PAGE, ops, t - t0, 1);
}

static int mmapseq(void)
{
	static char buf[PAGE];
	double t0;
	off_t size, off;
	char *map;
	int fd = open_size(O_RDONLY, &size);

	if (fd < 0)
		return fail("open");
	t0 = now();
	map = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return fail("mmap");
	for (off = 0; off + PAGE <= size; off += PAGE) {
		memcpy(buf, map + off, PAGE);
		sink ^= buf[(off / PAGE) % PAGE];
	}
	munmap(map, size);
	return report(off, off / PAGE, now() - t0, 0);
}

static int seqwrite(long mib)
{
	static char buf[CHUNK];
	double t0;
	int fd = open(path, O_WRONLY);

	if (fd < 0)
		return fail("open");
	/* Not zeroes: a host file system could treat those specially. */
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (char)(i * 31 + 7);
	t0 = now();
	for (long i = 0; i < mib; i++) {
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			return fail("write");
	}
	if (fsync(fd) < 0)
		return fail("fsync");
	if (close(fd) < 0)
		return fail("close");
	return report((double)mib * CHUNK, mib, now() - t0, 0);
}

static double positive(const char *s, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (*s == '\0' || *end != '\0' || !(v > 0)) {
		fprintf(stderr, "daxbench: %s must be a positive number, not '%s'\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	const char *op = argc > 1 ? argv[1] : "";

	if (argc >= 3)
		path = argv[2];
	if (argc == 3 && !strcmp(op, "seqread"))
		return seqread();
	if (argc == 3 && !strcmp(op, "mmapseq"))
		return mmapseq();
	if (argc == 4 && !strcmp(op, "randread"))
		return randread(positive(argv[3], "SECONDS"), 0);
	if (argc == 4 && !strcmp(op, "mmaprand"))
		return randread(positive(argv[3], "SECONDS"), 1);
	if (argc == 4 && !strcmp(op, "seqwrite"))
		return seqwrite((long)positive(argv[3], "MIB"));
	fprintf(stderr, "usage: daxbench seqread|mmapseq FILE\n"
			"       daxbench randread|mmaprand FILE SECONDS\n"
			"       daxbench seqwrite FILE MIB\n");
	return 2;
}
