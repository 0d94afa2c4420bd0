/*
 * LD_PRELOAD shim that makes a disk-image file look like a block device with
 * SHIM_SECTOR_SIZE-byte logical sectors to programs that ask with BLKSSZGET/BLKPBSZGET
 * (sgdisk does; for a plain file the kernel refuses the ioctl and sgdisk falls back to 512),
 * and answers BLKGETSIZE/BLKGETSIZE64 from fstat so the size agrees with the file.
 * Used by the tests to make and verify 4096-byte-sector GPT images with the real sgdisk
 * without loop devices. Every other ioctl goes to libc unchanged.
 *
 * Build: cc -shared -fPIC -o sector_size_shim.so sector_size_shim.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <linux/fs.h>

int ioctl(int fd, unsigned long request, ...)
{
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    if (request == BLKSSZGET || request == BLKPBSZGET) {
        const char *s = getenv("SHIM_SECTOR_SIZE");
        if (s != NULL) {
            *(int *)arg = atoi(s);
            return 0;
        }
    }
    /* The size queries have to agree with the file, or sgdisk mixes units. */
    struct stat st;
    if ((request == BLKGETSIZE64 || request == BLKGETSIZE) && getenv("SHIM_SECTOR_SIZE") != NULL
        && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        if (request == BLKGETSIZE64)
            *(unsigned long long *)arg = (unsigned long long)st.st_size;
        else
            *(unsigned long *)arg = (unsigned long)(st.st_size / 512);
        return 0;
    }
    int (*real)(int, unsigned long, void *) =
        (int (*)(int, unsigned long, void *))dlsym(RTLD_NEXT, "ioctl");
    return real(fd, request, arg);
}
