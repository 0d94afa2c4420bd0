/*
 * bench_boot's third side, "the floor": the kernel work Liftoff's PID 1 must have done
 * before it hands off the verified root, asked for with the least code there can be, so
 * that what is left of PID 1's own time above it is Liftoff's code and the rest of its
 * work. x86_64 only, as the bench; no C library (`cc -static -nostdlib -ffreestanding`):
 * its own `_start`, system calls and the few string helpers below, so that no library's
 * start-up or allocator is counted. It is a measuring instrument, not an init: it trusts
 * its input, checks little and reports a failed step as a `floor: failed` line, which
 * fails the bench.
 *
 * Its steps, each marked on the timeline as Liftoff's are (the same stage names):
 * - api-mounts: proc, sysfs, devtmpfs and a tmpfs on /run, /dev/kmsg opened;
 * - modules: every file /etc/modules names, in order, with finit_module (the busybox
 *   side's modules);
 * - disk: waits for the nodes of /etc/disk and the table's two devices;
 * - slots: the GPT's two copies (header and entries) read and written back unchanged,
 *   each synced, as the boot count writes them;
 * - verity: the table in /etc/table (Liftoff's own, from its log) created, loaded and
 *   resumed with three device-mapper ioctls;
 * - root: the verity device mounted read-only (erofs);
 * - etc: the root's /etc under an overlay with its upper layer on /run;
 * - handoff: /dev, /proc, /sys and /run moved into the root; then the root becomes / and
 *   the probe runs.
 * Not done (Liftoff does them): the command line's keys, finding the boot disk by its
 * partition's UUID, reading and checking the GPT, the slot choice and grubenv, pstore,
 * the verity superblock and top block, PRIVATE and DATA, the bounding set, every check
 * and every message.
 */
#include <stddef.h> /* size_t, which BLKGETSIZE64 names (a compiler header, not the C library) */
#include <linux/dm-ioctl.h>
#include <linux/fs.h>

#define O_RDONLY 00
#define O_WRONLY 01
#define O_RDWR 02
#define O_CLOEXEC 02000000
#define ENOENT 2

typedef unsigned long u64;

static long sys6(long n, long a, long b, long c, long d, long e, long f) {
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	register long r9 __asm__("r9") = f;
	long ret;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
			 : "rcx", "r11", "memory");
	return ret;
}
#define sys(n, a, b, c) sys6(n, (long)(a), (long)(b), (long)(c), 0, 0, 0)

/* x86_64 system call numbers. */
enum {
	SYS_read = 0, SYS_write = 1, SYS_open = 2, SYS_close = 3, SYS_ioctl = 16,
	SYS_pread64 = 17, SYS_pwrite64 = 18, SYS_access = 21, SYS_nanosleep = 35,
	SYS_execve = 59, SYS_exit = 60, SYS_fdatasync = 75, SYS_chdir = 80, SYS_mkdir = 83,
	SYS_chroot = 161, SYS_mount = 165, SYS_clock_gettime = 228, SYS_finit_module = 313,
};

/* The compiler may call these for struct copies and zeroing. */
void *memset(void *d, int c, u64 n) {
	unsigned char *p = d;
	while (n--) *p++ = (unsigned char)c;
	return d;
}
void *memcpy(void *d, const void *s, u64 n) {
	unsigned char *p = d;
	const unsigned char *q = s;
	while (n--) *p++ = *q++;
	return d;
}

static u64 len(const char *s) {
	u64 n = 0;
	while (s[n]) n++;
	return n;
}

/* Appends `s` to `out` at `*at` (bounded by `size`, always NUL-terminated). */
static void put(char *out, u64 size, u64 *at, const char *s) {
	while (*s && *at + 1 < size) out[(*at)++] = *s++;
	out[*at] = 0;
}

static void put_u64(char *out, u64 size, u64 *at, u64 v) {
	char digits[24];
	int n = 0;
	do digits[n++] = (char)('0' + v % 10);
	while (v /= 10);
	char s[24];
	for (int i = 0; i < n; i++) s[i] = digits[n - 1 - i];
	s[n] = 0;
	put(out, size, at, s);
}

static int kmsg = -1;

static u64 boottime_us(void) {
	long t[2] = {0, 0};
	sys(SYS_clock_gettime, 7 /* CLOCK_BOOTTIME */, t, 0);
	return (u64)t[0] * 1000000 + (u64)t[1] / 1000;
}

static void say(const char *what, const char *more) {
	char line[256];
	u64 at = 0;
	put(line, sizeof line, &at, "floor: ");
	put(line, sizeof line, &at, what);
	put(line, sizeof line, &at, more);
	put(line, sizeof line, &at, "\n");
	if (kmsg >= 0) sys(SYS_write, kmsg, line, at);
}

static void mark_at(const char *stage, u64 us) {
	char line[96];
	u64 at = 0;
	put(line, sizeof line, &at, stage);
	put(line, sizeof line, &at, " boottime_us=");
	put_u64(line, sizeof line, &at, us);
	say("timeline stage=", line);
}

static void mark(const char *stage) { mark_at(stage, boottime_us()); }

static void failed(const char *step) { say("failed: ", step); }

/* The file `path` into `out`, NUL-terminated. */
static void read_file(const char *path, char *out, u64 size) {
	long fd = sys(SYS_open, path, O_RDONLY | O_CLOEXEC, 0);
	long n = fd < 0 ? -1 : sys(SYS_read, fd, out, size - 1);
	if (n < 0) {
		failed(path);
		n = 0;
	}
	out[n] = 0;
	sys(SYS_close, fd, 0, 0);
}

/* The next word of `*s` (split at spaces and newlines), NUL-terminated in place. */
static char *word(char **s) {
	while (**s == ' ' || **s == '\n') (*s)++;
	char *start = *s;
	while (**s && **s != ' ' && **s != '\n') (*s)++;
	if (**s) *(*s)++ = 0;
	return start;
}

static u64 parse_u64(const char *s) {
	u64 v = 0;
	while (*s >= '0' && *s <= '9') v = v * 10 + (u64)(*s++ - '0');
	return v;
}

static int mount(const char *source, const char *target, const char *type, u64 flags,
		 const char *data) {
	return (int)sys6(SYS_mount, (long)source, (long)target, (long)type, (long)flags,
			 (long)data, 0);
}

static void dm(long control, unsigned long request, u64 sectors, const char *target,
	       const char *params) {
	static char buf[16384];
	memset(buf, 0, sizeof buf);
	struct dm_ioctl *io = (struct dm_ioctl *)buf;
	io->version[0] = DM_VERSION_MAJOR;
	io->data_size = sizeof buf;
	io->data_start = sizeof *io;
	u64 at = 0;
	put(io->name, sizeof io->name, &at, "root");
	if (params) {
		struct dm_target_spec *spec = (struct dm_target_spec *)(buf + sizeof *io);
		spec->length = sectors;
		at = 0;
		put(spec->target_type, sizeof spec->target_type, &at, target);
		at = 0;
		put((char *)(spec + 1), sizeof buf - sizeof *io - sizeof *spec, &at, params);
		io->target_count = 1;
		io->flags = DM_READONLY_FLAG;
	}
	if (sys(SYS_ioctl, control, request, io) < 0) failed("device-mapper ioctl");
}

static void rewrite(long disk, u64 offset, u64 size) {
	static char copy[64 * 1024];
	long n = (long)size;
	if (size > sizeof copy ||
	    sys6(SYS_pread64, disk, (long)copy, n, (long)offset, 0, 0) != n ||
	    sys6(SYS_pwrite64, disk, (long)copy, n, (long)offset, 0, 0) != n ||
	    sys(SYS_fdatasync, disk, 0, 0))
		failed("rewriting a GPT copy");
}

static void floor_main(char **envp) {
	u64 started = boottime_us();
	const u64 nosuid_nodev_noexec = MS_NOSUID | MS_NODEV | MS_NOEXEC;
	if (mount("proc", "/proc", "proc", nosuid_nodev_noexec, 0) ||
	    mount("sysfs", "/sys", "sysfs", nosuid_nodev_noexec, 0) ||
	    mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755") ||
	    mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"))
		return;
	kmsg = sys(SYS_open, "/dev/kmsg", O_WRONLY | O_CLOEXEC, 0);
	mark_at("pid1", started);
	mark("api-mounts");

	static char modules[8192];
	read_file("/etc/modules", modules, sizeof modules);
	for (char *next = modules, *name; *(name = word(&next));) {
		/* One whose hardware is absent does not load, as with busybox's insmod. */
		long fd = sys(SYS_open, name, O_RDONLY | O_CLOEXEC, 0);
		if (fd < 0) failed(name);
		sys(SYS_finit_module, fd, "", 0);
		sys(SYS_close, fd, 0, 0);
	}
	mark("modules");

	/* "0 SECTORS verity 1 DATA_DEV HASH_DEV ...": the target's parameters from the
	 * version on, kept whole for the ioctl. */
	static char table[1024], words[1024], disk_path[64];
	read_file("/etc/table", table, sizeof table);
	read_file("/etc/disk", disk_path, sizeof disk_path);
	char *rest = disk_path;
	char *disk_node = word(&rest);
	table[len(table) - (len(table) > 0 && table[len(table) - 1] == '\n')] = 0;
	u64 copied = 0;
	put(words, sizeof words, &copied, table);
	rest = words;
	word(&rest);
	u64 sectors = parse_u64(word(&rest));
	char *target = word(&rest);
	while (*rest == ' ') rest++;
	const char *params = table + (rest - words);
	word(&rest);
	char *data_dev = word(&rest), *hash_dev = word(&rest);
	long tick[2] = {0, 1000000};
	while (sys(SYS_access, disk_node, 0, 0) == -ENOENT ||
	       sys(SYS_access, data_dev, 0, 0) == -ENOENT ||
	       sys(SYS_access, hash_dev, 0, 0) == -ENOENT)
		sys(SYS_nanosleep, tick, 0, 0);
	mark("disk");

	long disk = sys(SYS_open, disk_node, O_RDWR | O_CLOEXEC, 0);
	u64 bytes = 0;
	if (disk < 0 || sys(SYS_ioctl, disk, BLKGETSIZE64, &bytes)) failed(disk_node);
	/* 512-byte sectors: the header at LBA 1 and 128 entries of 128 bytes behind it; the
	 * backup's entries and header in the disk's last 33 sectors. */
	rewrite(disk, 512, 33 * 512);
	rewrite(disk, bytes - 33 * 512, 33 * 512);
	sys(SYS_close, disk, 0, 0);
	mark("slots");

	long control = sys(SYS_open, "/dev/mapper/control", O_RDWR | O_CLOEXEC, 0);
	dm(control, DM_DEV_CREATE, 0, 0, 0);
	dm(control, DM_TABLE_LOAD, sectors, target, params);
	dm(control, DM_DEV_SUSPEND, 0, 0, 0);
	sys(SYS_close, control, 0, 0);
	mark("verity");

	if (mount("/dev/dm-0", "/sysroot", "erofs", MS_RDONLY | MS_NODEV, 0)) failed("root mount");
	mark("root");

	if (sys(SYS_mkdir, "/run/etc", 0755, 0) || sys(SYS_mkdir, "/run/etc/upper", 0755, 0) ||
	    sys(SYS_mkdir, "/run/etc/work", 0755, 0) ||
	    mount("overlay", "/sysroot/etc", "overlay", MS_NODEV,
		  "lowerdir=/sysroot/etc,upperdir=/run/etc/upper,workdir=/run/etc/work"))
		failed("/etc overlay");
	mark("etc");

	if (mount("/dev", "/sysroot/dev", 0, MS_MOVE, 0) ||
	    mount("/proc", "/sysroot/proc", 0, MS_MOVE, 0) ||
	    mount("/sys", "/sysroot/sys", 0, MS_MOVE, 0) ||
	    mount("/run", "/sysroot/run", 0, MS_MOVE, 0))
		failed("moving the API file systems");
	mark("handoff");
	if (sys(SYS_chdir, "/sysroot", 0, 0) || mount(".", "/", 0, MS_MOVE, 0) ||
	    sys(SYS_chroot, ".", 0, 0) || sys(SYS_chdir, "/", 0, 0))
		failed("switching root");
	char *argv[] = {"/usr/local/bin/liftoff-probe", 0};
	sys(SYS_execve, argv[0], argv, envp);
	failed(argv[0]);
}

/* The kernel's entry: argc at the stack pointer, then argv, NULL, envp. */
void floor_start(long *stack) {
	long argc = stack[0];
	floor_main((char **)(stack + argc + 2));
	sys(SYS_exit, 1, 0, 0);
}

__asm__(".globl _start\n"
	"_start:\n"
	"	mov %rsp, %rdi\n"
	"	and $-16, %rsp\n"
	"	call floor_start\n");
