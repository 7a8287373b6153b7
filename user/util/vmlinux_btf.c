/* The kernel's BTF for libbpf, read without a second copy.
 *
 * libbpf 1.1 (Debian 12) reads /sys/kernel/btf/vmlinux into a buffer and then copies it into
 * the struct btf it builds: two 5-6 MB copies at once at every skeleton load, for a moment the
 * largest thing in our memory. Since 6.16 the kernel lets that file be mapped (its pages are
 * the kernel's own: mapping them costs no memory of ours), and libbpf 1.6 maps it. This is
 * that, for the libbpf we link: libbpf looks btf__load_vmlinux_btf up through the dynamic
 * linker, so this definition is the one bpf_object__load calls. Where the file cannot be mapped
 * (older kernels), libbpf's own function runs. The result is the same struct btf either way. */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <bpf/btf.h>

#define VMLINUX_BTF "/sys/kernel/btf/vmlinux"

static struct btf *vmlinux_btf__map(void)
{
	struct btf *btf = NULL;
	struct stat st;
	void *data;
	int fd;

	fd = open(VMLINUX_BTF, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	if (fstat(fd, &st) == 0 && st.st_size > 0) {
		data = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (data != MAP_FAILED) {
			btf = btf__new(data, st.st_size); /* copies what it keeps */
			munmap(data, st.st_size);
		}
	}
	close(fd);
	return btf;
}

struct btf *btf__load_vmlinux_btf(void)
{
	struct btf *(*libbpf_own)(void);
	struct btf *btf = vmlinux_btf__map();

	if (btf)
		return btf;
	libbpf_own = (struct btf * (*)(void)) dlsym(RTLD_NEXT, "btf__load_vmlinux_btf");
	if (!libbpf_own) {
		errno = ENOENT;
		return NULL;
	}
	return libbpf_own();
}
