// SPDX-License-Identifier: GPL-2.0
/*
 * The guest half of the live-migration test (selftests/vm/migrate-vm.sh).
 *
 * Before the migration it builds the state a real workload holds on a
 * virtio-fs mount: a file open for reading and one for appending, a
 * directory stream half read, an open-but-deleted file, a cwd inside the
 * mount and a held flock.  It says "HF-MIGRATE-READY" on the console and
 * keeps appending and reading back while the host migrates the VM, until
 * the host creates .migrated in the shared directory.  Then, now running
 * on the destination and served by the destination's holdfastd, every one
 * of those must still work and every byte must be there.
 *
 * Usage: migrate_guest DIR   (a virtio-fs mount with cache=never)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kselftest_harness.h"

#define BLOCK 4096
#define RFILE_BLOCKS 256	/* 1 MiB to read from */
#define DEL_BLOCKS 32		/* the deleted file's 128 KiB */

/* The destination cannot have the deleted file (migrate-vm.sh --find-paths). */
static bool deleted_lost;
#define NENTRIES 26
#define WAIT_S 300

static const char *dir;

static void fill(unsigned char *b, unsigned int seed, unsigned long blk)
{
	unsigned long x = seed * 2654435761u + blk * 40503u + 1;
	int i;

	for (i = 0; i < BLOCK; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		b[i] = (unsigned char)(x >> 56);
	}
}

static int check_block(int fd, unsigned int seed, unsigned long blk)
{
	unsigned char want[BLOCK], got[BLOCK];

	fill(want, seed, blk);
	if (pread(fd, got, BLOCK, (off_t)blk * BLOCK) != BLOCK)
		return -1;
	return memcmp(want, got, BLOCK) ? -1 : 0;
}

static int write_blocks(int fd, unsigned int seed, unsigned long n)
{
	unsigned char b[BLOCK];
	unsigned long i;

	for (i = 0; i < n; i++) {
		fill(b, seed, i);
		if (pwrite(fd, b, BLOCK, (off_t)i * BLOCK) != BLOCK)
			return -1;
	}
	return 0;
}

static void console(const char *msg)
{
	int fd = open("/dev/console", O_WRONLY | O_NOCTTY | O_CLOEXEC);

	if (fd >= 0) {
		(void)!write(fd, msg, strlen(msg));
		close(fd);
	}
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

FIXTURE(mig) {
	int unused;
};

FIXTURE_SETUP(mig)
{
}

FIXTURE_TEARDOWN(mig)
{
}

/* TCG migrates in tens of seconds; the default 30 s would cut it short. */
TEST_F_TIMEOUT(mig, survives_migration, WAIT_S + 60)
{
	unsigned char b[BLOCK];
	char name[8], path[64];
	int rfd, wfd, dfd, i, seen;
	unsigned long appended = 0, reads = 0, slow = 0;
	double t, worst = 0, t_end;
	struct dirent *de;
	struct stat st;
	DIR *ds, *ds2;

	ASSERT_EQ(0, chdir(dir));
	ASSERT_EQ(0, mkdir("d", 0755));
	for (i = 0; i < NENTRIES; i++) {
		snprintf(path, sizeof(path), "d/%c", 'a' + i);
		ASSERT_EQ(0, mknod(path, S_IFREG | 0644, 0));
	}

	rfd = open("r.dat", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	ASSERT_LE(0, rfd);
	ASSERT_EQ(0, write_blocks(rfd, 1, RFILE_BLOCKS));
	close(rfd);
	rfd = open("r.dat", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, rfd);
	ASSERT_EQ(0, check_block(rfd, 1, 0));
	ASSERT_EQ(0, flock(rfd, LOCK_EX | LOCK_NB));

	wfd = open("w.dat", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	ASSERT_LE(0, wfd);

	dfd = open("del.dat", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	ASSERT_LE(0, dfd);
	ASSERT_EQ(0, write_blocks(dfd, 3, DEL_BLOCKS));
	ASSERT_EQ(0, unlink("del.dat"));

	/* Half a directory stream: the rest must come from the destination. */
	ds = opendir("d");
	ASSERT_NE(NULL, ds);
	seen = 0;
	while (seen < 10 && (de = readdir(ds)))
		if (de->d_name[0] != '.')
			seen++;
	ASSERT_EQ(10, seen);
	ASSERT_EQ(0, chdir("d"));

	/* The host's pre/ files: every one the back-end must carry over. */
	ds2 = opendir("../pre");
	if (ds2) {
		unsigned long n = 0;
		char msg[96];

		t = now();
		while ((de = readdir(ds2)))
			if (de->d_name[0] != '.' && !fstatat(dirfd(ds2), de->d_name, &st, 0))
				n++;
		closedir(ds2);
		snprintf(msg, sizeof(msg), "HF: pre-stat %lu inodes in %.1f s\n", n, now() - t);
		console(msg);
	}

	console("HF-MIGRATE-READY\n");
	t_end = now() + WAIT_S;
	for (;;) {
		if (faccessat(AT_FDCWD, "../.migrated", F_OK, 0) == 0)
			break;
		ASSERT_GT(t_end, now()) TH_LOG("the host never said the migration ended");
		t = now();
		fill(b, 2, appended);
		ASSERT_EQ(BLOCK, write(wfd, b, BLOCK)) TH_LOG("append %lu: %s", appended,
							     strerror(errno));
		appended++;
		ASSERT_EQ(0, check_block(rfd, 1, reads % RFILE_BLOCKS))
			TH_LOG("read of block %lu", reads % RFILE_BLOCKS);
		reads++;
		t = now() - t;
		if (t > worst)
			worst = t;
		if (t > 0.5)
			slow++;
		usleep(20000);
	}
	TH_LOG("during the migration: %lu appends, %lu reads, slowest %.3f s, %lu over 0.5 s",
	       appended, reads, worst, slow);

	/* Everything opened on the source, used on the destination. */
	while ((de = readdir(ds)))
		if (de->d_name[0] != '.')
			seen++;
	EXPECT_EQ(NENTRIES, seen) TH_LOG("the directory stream lost entries");
	closedir(ds);

	if (deleted_lost) {
		/*
		 * find-paths to another file system: a file without a name
		 * cannot be found there, and says so for itself alone.
		 */
		/* From the server, not what the guest has cached. */
		posix_fadvise(dfd, 0, 0, POSIX_FADV_DONTNEED);
		EXPECT_EQ(-1, pread(dfd, b, BLOCK, 0));
		EXPECT_EQ(ESTALE, errno) TH_LOG("the deleted file: %s", strerror(errno));
	} else {
		ASSERT_EQ(0, fstat(dfd, &st));
		EXPECT_EQ(0, st.st_nlink);
		EXPECT_EQ((off_t)DEL_BLOCKS * BLOCK, st.st_size);
		for (i = 0; i < DEL_BLOCKS; i++)
			EXPECT_EQ(0, check_block(dfd, 3, i)) TH_LOG("deleted file, block %d", i);
		fill(b, 4, 0);
		EXPECT_EQ(BLOCK, pwrite(dfd, b, BLOCK, 0));
		EXPECT_EQ(0, check_block(dfd, 4, 0));
	}
	close(dfd);

	for (i = 0; i < RFILE_BLOCKS; i++)
		EXPECT_EQ(0, check_block(rfd, 1, i)) TH_LOG("r.dat block %d", i);
	EXPECT_EQ(0, flock(rfd, LOCK_UN));

	for (i = 0; i < 16; i++) {
		fill(b, 2, appended);
		EXPECT_EQ(BLOCK, write(wfd, b, BLOCK));
		appended++;
	}
	EXPECT_EQ(0, close(wfd));

	/* cwd is still d/, and resolves. */
	snprintf(name, sizeof(name), "%c", 'a' + NENTRIES - 1);
	EXPECT_EQ(0, stat(name, &st));

	/* Every appended byte, through a fresh open on the destination. */
	wfd = open("../w.dat", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, wfd);
	ASSERT_EQ(0, fstat(wfd, &st));
	EXPECT_EQ((off_t)appended * BLOCK, st.st_size);
	for (unsigned long k = 0; k < appended; k++)
		if (check_block(wfd, 2, k)) {
			EXPECT_EQ(0, (int)k + 1) TH_LOG("w.dat block %lu is wrong", k);
			break;
		}
	close(wfd);
	close(rfd);
	TH_LOG("HF-MIGRATE-APPENDED %lu", appended);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[2], "--deleted-lost"))
		deleted_lost = true;
	else if (argc != 2) {
		fprintf(stderr, "usage: %s DIR [--deleted-lost]\n", argv[0]);
		return 2;
	}
	dir = argv[1];
	return test_harness_run(1, argv);
}
