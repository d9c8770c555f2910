/*
 * policyc_consts: the names a .policy file may use as values, resolved from the system headers
 * when policyc itself is built (so VFIO ioctl numbers come from <linux/vfio.h>, never from a
 * copy). A name that is not in this table is a build error in the policy, not a guess.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>

#include <asm/prctl.h>
#include <linux/falloc.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <linux/vfio.h>

#include "base.h"
#include "policyc.h"

#define K(name)                         \
	{                               \
#name, (uint64_t)(name) \
	}

static const struct policyc_const policyc__consts[] = {
    /* <linux/vfio.h>: container, group and device ioctls */
    K(VFIO_GET_API_VERSION),
    K(VFIO_CHECK_EXTENSION),
    K(VFIO_SET_IOMMU),
    K(VFIO_IOMMU_GET_INFO),
    K(VFIO_IOMMU_MAP_DMA),
    K(VFIO_IOMMU_UNMAP_DMA),
    K(VFIO_IOMMU_ENABLE),
    K(VFIO_IOMMU_DISABLE),
    K(VFIO_IOMMU_DIRTY_PAGES),
    K(VFIO_GROUP_GET_STATUS),
    K(VFIO_GROUP_SET_CONTAINER),
    K(VFIO_GROUP_UNSET_CONTAINER),
    K(VFIO_GROUP_GET_DEVICE_FD),
    K(VFIO_DEVICE_GET_INFO),
    K(VFIO_DEVICE_GET_REGION_INFO),
    K(VFIO_DEVICE_GET_IRQ_INFO),
    K(VFIO_DEVICE_SET_IRQS),
    K(VFIO_DEVICE_RESET),
    K(VFIO_DEVICE_GET_PCI_HOT_RESET_INFO),
    K(VFIO_DEVICE_PCI_HOT_RESET),
    K(VFIO_DEVICE_QUERY_GFX_PLANE),
    K(VFIO_DEVICE_GET_GFX_DMABUF),
    K(VFIO_DEVICE_IOEVENTFD),
    K(VFIO_DEVICE_FEATURE),
    /* <sys/ioctl.h>, <termios.h> */
    K(FIONBIO),
    K(FIOCLEX),
    K(FIONCLEX),
    K(FIONREAD),
    K(FIOASYNC),
    K(TCGETS),
    K(TIOCGWINSZ),
    K(TIOCSTI),
    /* <sys/mman.h> */
    K(PROT_NONE),
    K(PROT_READ),
    K(PROT_WRITE),
    K(PROT_EXEC),
    K(MAP_SHARED),
    K(MAP_PRIVATE),
    K(MAP_FIXED),
    K(MAP_ANONYMOUS),
    K(MAP_NORESERVE),
    K(MAP_POPULATE),
    K(MADV_DONTNEED),
    K(MADV_FREE),
    K(MADV_WILLNEED),
    K(MADV_DONTFORK),
    K(MFD_CLOEXEC),
    K(MFD_ALLOW_SEALING),
    /* <linux/falloc.h> */
    K(FALLOC_FL_KEEP_SIZE),
    K(FALLOC_FL_PUNCH_HOLE),
    /* <fcntl.h> */
    K(F_DUPFD),
    K(F_DUPFD_CLOEXEC),
    K(F_GETFD),
    K(F_SETFD),
    K(F_GETFL),
    K(F_SETFL),
    K(F_GET_SEALS),
    K(F_ADD_SEALS),
    K(O_RDONLY),
    K(O_WRONLY),
    K(O_RDWR),
    K(O_CREAT),
    K(O_EXCL),
    K(O_TRUNC),
    K(O_CLOEXEC),
    K(O_NONBLOCK),
    K(O_DIRECTORY),
    K(O_PATH),
    K(AT_EMPTY_PATH),
    K(AT_SYMLINK_NOFOLLOW),
    /* <sys/socket.h> */
    K(AF_UNIX),
    K(AF_INET),
    K(AF_INET6),
    K(AF_NETLINK),
    K(SOCK_STREAM),
    K(SOCK_DGRAM),
    K(SOCK_SEQPACKET),
    K(SOCK_CLOEXEC),
    K(SOCK_NONBLOCK),
    K(SOL_SOCKET),
    K(SO_PEERCRED),
    K(SO_TYPE),
    K(SO_DOMAIN),
    K(SO_ERROR),
    K(SO_SNDBUF),
    K(SO_RCVBUF),
    K(SO_PASSCRED),
    K(MSG_CMSG_CLOEXEC),
    K(MSG_DONTWAIT),
    K(MSG_NOSIGNAL),
    /* <sys/prctl.h>, <asm/prctl.h> */
    K(PR_SET_NO_NEW_PRIVS),
    K(PR_GET_NO_NEW_PRIVS),
    K(PR_CAPBSET_READ),
    K(PR_CAPBSET_DROP),
    K(PR_CAP_AMBIENT),
    K(PR_SET_PDEATHSIG),
    K(PR_SET_DUMPABLE),
    K(PR_SET_KEEPCAPS),
    K(PR_SET_NAME),
    K(PR_SET_SECUREBITS),
    K(PR_GET_SECUREBITS),
    K(ARCH_SET_FS),
    K(ARCH_GET_FS),
    /* <linux/seccomp.h> */
    K(SECCOMP_SET_MODE_STRICT),
    K(SECCOMP_SET_MODE_FILTER),
    K(SECCOMP_GET_ACTION_AVAIL),
    K(SECCOMP_GET_NOTIF_SIZES),
    /* <linux/futex.h> */
    K(FUTEX_WAIT_PRIVATE),
    K(FUTEX_WAKE_PRIVATE),
    K(FUTEX_WAKE),
    /* <sys/mount.h> */
    K(MS_RDONLY),
    K(MS_NOSUID),
    K(MS_NODEV),
    K(MS_NOEXEC),
    K(MS_REC),
    K(MS_PRIVATE),
    K(MS_SLAVE),
    K(MS_BIND),
    K(MS_REMOUNT),
    K(MNT_DETACH),
    K(MNT_FORCE),
    /* <sched.h> */
    K(CLONE_VM),
    K(CLONE_FS),
    K(CLONE_FILES),
    K(CLONE_SIGHAND),
    K(CLONE_THREAD),
    K(CLONE_NEWUSER),
    K(CLONE_NEWPID),
    K(CLONE_NEWNET),
    K(CLONE_NEWNS),
    K(CLONE_NEWIPC),
    K(CLONE_NEWUTS),
    K(CLONE_NEWCGROUP),
    /* <signal.h> */
    K(SIGKILL),
    K(SIGTERM),
    K(SIGCHLD),
};

static const struct policyc_const policyc__errnos[] = {
    K(EPERM),  K(ENOENT), K(EACCES), K(EBADF),	 K(EINVAL),
    K(ENOSYS), K(ENOTTY), K(EAGAIN), K(ENOTSUP), K(EOPNOTSUPP),
    K(ENXIO),  K(ENODEV), K(EROFS),  K(ENOMEM),	 K(EAFNOSUPPORT),
};

static int policyc__find(const struct policyc_const *t, size_t n, const char *name, uint64_t *ret)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (strcmp(t[i].name, name) == 0) {
			*ret = t[i].value;
			return 0;
		}
	}
	return -ENOENT;
}

int policyc_const_lookup(const char *name, uint64_t *ret)
{
	return policyc__find(policyc__consts, ARRAY_SIZE(policyc__consts), name, ret);
}

int policyc_errno_lookup(const char *name, uint64_t *ret)
{
	return policyc__find(policyc__errnos, ARRAY_SIZE(policyc__errnos), name, ret);
}
