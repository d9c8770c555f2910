/*
 * libvfiobroker: the C API a VMM links to drive a PCI device assigned through vfio-broker, and
 * the control-socket API an orchestrator links to assign and remove devices.
 *
 * A device is reached through its worker's VMM socket (the path vfio-brokerd returns when the
 * device is added). The handle, `struct vfb_dev`, speaks the device protocol to the worker:
 * handshake, device/region/IRQ information, config space and BAR accesses, DMA mappings from
 * memfds, interrupt eventfds, reset and removal. Events from the worker (removal requested, worker
 * restarted, BARs changed, reset) are delivered through a pollable fd so that the handle fits
 * into any event loop (poll, epoll, libuv's uv_poll_t, GLib, ...).
 *
 * Conventions, for every function below:
 *  - Errors are negative errno values; 0 (or a documented non-negative value) is success. When
 *    the peer refused a request, its errno is returned and its message is kept for
 *    vfb_dev_last_error() / vfb_ctl_last_error().
 *  - Requests are synchronous: each waits for its answer at most the handle's timeout
 *    (vfb_dev_set_timeout(), default VFB_TIMEOUT_DEFAULT_MS) and fails with -ETIMEDOUT after it.
 *    A late answer is discarded when it arrives. A device request the worker may hold for the
 *    broker (config and region writes, DMA map and unmap, interrupt fds, reset) waits longer by
 *    what the worker's HELLO announced (its wait for the broker, 30 s: a broker restart), so
 *    that the worker's own answer comes first (-ETIMEDOUT with the request undone, or done)
 *    rather than a timeout that leaves the request's outcome unknown.
 *  - A peer that hung up makes every later call fail with -EPIPE (or -ECONNRESET).
 *  - Events are held for vfb_*_next_event() in a bounded queue: with 64 events not taken,
 *    requests fail with -ENOBUFS (nothing is lost) until the caller takes some.
 *  - Flag arguments are checked against the flags defined here: an unknown bit is -EINVAL and
 *    nothing is sent.
 *  - Fds passed in are never closed or kept by the library unless a function says it takes
 *    ownership. Fds returned to the caller are close-on-exec and owned by the caller.
 *  - Constructors leave *ret untouched on failure.
 *
 * Thread safety: a handle is not internally locked. Use each handle from one thread at a time
 * (different handles may be used from different threads concurrently). The library keeps no
 * global state and never logs, installs signal handlers or writes to stdout/stderr.
 */
#ifndef VFIOBROKER_CLIENT_H
#define VFIOBROKER_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VFB_EXPORT __attribute__((visibility("default")))

/* ----------------------------------------------------------------------------------------------
 * Common helpers
 */

/* The library's version, "MAJOR.MINOR.PATCH". Never NULL. */
VFB_EXPORT const char *vfb_version(void);

/* Timeout used by a new handle, in milliseconds. */
#define VFB_TIMEOUT_DEFAULT_MS 5000

/* Room for a canonical PCI address "dddd:bb:dd.f" (or a longer domain) and its NUL. */
#define VFB_BDF_MAX 20

/*
 * Checks a PCI address and writes its canonical form (lowercase, 4-digit domain at least:
 * "0000:00:03.0") to `out`. Accepts "DDDD:BB:DD.F" with a domain of 4 to 8 hex digits, and the
 * short form "BB:DD.F" (domain 0). Device must be <= 0x1f and function <= 7.
 * Errors: -EINVAL malformed; -ENOBUFS when `outlen` cannot hold the result (VFB_BDF_MAX can).
 */
VFB_EXPORT int vfb_bdf_normalize(const char *bdf, char *out, size_t outlen);

/* ----------------------------------------------------------------------------------------------
 * Device handle (VMM <-> vfio-worker)
 */

struct vfb_dev;

/* Resource limits; 0 means "not announced". */
struct vfb_limits {
	uint32_t max_message_bytes; /* largest datagram the peer accepts, header included */
	uint32_t max_fds;	    /* most fds per message */
	uint32_t max_dma_mappings;  /* per VM */
	uint64_t max_pinned_bytes;  /* per VM */
	uint32_t max_outstanding;   /* requests in flight per connection */
};

/* vfb_dev_connect() flags: offer no shared-memory ring (the socket carries every access). */
#define VFB_DEV_CONNECT_NO_RING (1u << 0)

/*
 * Connects to a worker's VMM socket at `path`, performs the handshake (protocol version and
 * limits, and the shared-memory ring below) and returns a handle. `client_name` (may be NULL)
 * names the VMM in the worker's logs; it is truncated to 63 bytes. `flags`: 0 or
 * VFB_DEV_CONNECT_NO_RING.
 *
 * The ring. Unless VFB_DEV_CONNECT_NO_RING is given, the handshake offers the worker a shared
 * memory ring for trapped accesses: one page of a memfd the handle creates (sealed with
 * F_SEAL_SHRINK, F_SEAL_GROW and F_SEAL_SEAL, so its size never changes) and a doorbell eventfd.
 * When the worker takes it (vfb_dev_ring_active()), vfb_dev_cfg_read/write() and
 * vfb_dev_region_read/write() send each access of up to 8 bytes through the page instead of the
 * socket: a VMM needs no code change, and the answers, errors and vfb_dev_last_error() are the
 * same. Accesses stay synchronous calls: the handle posts the access, rings the doorbell only
 * when the worker sleeps, and waits for the answer in the call (spinning up to 50 us first when
 * the worker is awake on another CPU, else asleep in FUTEX_WAIT on the page); the doorbell and
 * the page are the handle's own and never become readable to the caller, so an event-loop VMM
 * keeps watching vfb_dev_event_fd() alone, where events still arrive (over the socket). A worker
 * may decline (an older one, one started with --no-ring, or a ring it finds wrong): the socket
 * then carries every access, as it always carries everything else. A ring whose answer does not
 * come in time, or that breaks, is dropped and the socket takes over for the handle's life.
 *
 * Errors: -EINVAL bad argument or flags; -ENAMETOOLONG path too long for a unix socket;
 * -ENOENT / -ECONNREFUSED / -EACCES no worker listening or not allowed; -EPROTONOSUPPORT the
 * worker speaks another protocol version; -EBUSY another VMM is connected (as the worker says);
 * -ETIMEDOUT; -ENOMEM.
 * The worker asks the broker to admit the VMM; while no broker runs (a restart or upgrade) it
 * waits up to 30 s for the next one, then refuses with -ETIMEDOUT (connect again; the worker's
 * message says so: vfb_dev_connect_why() returns it). The
 * handshake waits that long on top of the default timeout, so that it gets the worker's answer
 * (admitted by the next broker) rather than giving up first.
 * Fds: none are passed in; the handle owns its socket, epoll fd and eventfd, and with a ring its
 * doorbell eventfd and a shared mapping of the ring's page (all O_CLOEXEC; the ring's memfd is
 * closed once offered).
 */
VFB_EXPORT int vfb_dev_connect(const char *path, const char *client_name, uint32_t flags,
			       struct vfb_dev **ret);

/*
 * Same as vfb_dev_connect() over an already connected AF_UNIX SOCK_SEQPACKET socket (for a VMM
 * that receives the socket from its orchestrator). Ownership of `fd` passes to the handle on
 * success only; on failure the caller still owns it.
 * Errors: as vfb_dev_connect(), plus -EBADF when `fd` is not open, -ENOTSOCK when it is not a
 * socket, -EPROTOTYPE when it is not SOCK_SEQPACKET. The handle clears the fd's O_NONBLOCK and
 * sets its SO_RCVTIMEO (a request waits for its answer in one blocking recvmsg(); everything
 * else it does passes MSG_DONTWAIT); both are shared with any duplicate the caller keeps, which
 * it should not read or write.
 */
VFB_EXPORT int vfb_dev_connect_fd(int fd, const char *client_name, uint32_t flags,
				  struct vfb_dev **ret);

/*
 * As vfb_dev_connect() / vfb_dev_connect_fd() (same errors, same fd ownership), and a failed
 * connect says why in `why` (`why_len` bytes, always NUL-terminated; NULL or 0: not wanted), since
 * there is no handle for vfb_dev_last_error(): the worker's own message when it refused the
 * connection (as "the broker did not answer in 30 s (it may be restarting); retry" during a
 * broker restart, with -ETIMEDOUT; or why another VMM's connection keeps it out, with -EBUSY),
 * else the step that failed ("cannot connect to PATH: No such file or directory"). `why` is ""
 * after a successful connect.
 */
VFB_EXPORT int vfb_dev_connect_why(const char *path, const char *client_name, uint32_t flags,
				   struct vfb_dev **ret, char *why, size_t why_len);
VFB_EXPORT int vfb_dev_connect_fd_why(int fd, const char *client_name, uint32_t flags,
				      struct vfb_dev **ret, char *why, size_t why_len);

/* Closes the connection and every fd the handle owns; drops queued events. NULL is ignored.
 * Fds the caller obtained from the handle (region fds) stay open and stay the caller's. */
VFB_EXPORT void vfb_dev_close(struct vfb_dev *dev);

/* Sets the per-request timeout: milliseconds, or -1 to wait forever (requests the worker may
 * hold for the broker wait longer: see the conventions above). Errors: -EINVAL. */
VFB_EXPORT int vfb_dev_set_timeout(struct vfb_dev *dev, int timeout_ms);

/* The message of the last error reply on this handle ("" when none). Valid until the next
 * call on the handle. */
VFB_EXPORT const char *vfb_dev_last_error(const struct vfb_dev *dev);

/* The device's PCI address as the worker announced it in the handshake. */
VFB_EXPORT const char *vfb_dev_bdf(const struct vfb_dev *dev);

/* The worker's limits from the handshake. Never fails. */
VFB_EXPORT void vfb_dev_peer_limits(const struct vfb_dev *dev, struct vfb_limits *ret);

/* Whether trapped accesses go through the shared-memory ring (see vfb_dev_connect()). */
VFB_EXPORT bool vfb_dev_ring_active(const struct vfb_dev *dev);
/* Why they do not, in words ("" while they do): not offered, declined by the worker (with its
 * reason), or dropped after a failure. Valid until the handle is closed. */
VFB_EXPORT const char *vfb_dev_ring_reason(const struct vfb_dev *dev);

/* Room for vfb_dev_ring_reason()'s text, its NUL included. */
#define VFB_RING_WHY_MAX 320

struct vfb_device_info {
	char bdf[VFB_BDF_MAX];
	uint32_t flags; /* VFIO_DEVICE_FLAGS_* */
	uint32_t num_regions;
	uint32_t num_irqs;
	uint32_t vendor_id;
	uint32_t device_id;
	uint32_t subsystem_vendor_id;
	uint32_t subsystem_id;
	uint32_t class_code;
};

/* Device information (DEVICE_INFO). Errors: -EPROTO malformed answer, request errors. */
VFB_EXPORT int vfb_dev_device_info(struct vfb_dev *dev, struct vfb_device_info *ret);

/* The most mappable areas one region may report. */
#define VFB_MMAP_AREAS_MAX 16

struct vfb_mmap_area {
	uint64_t offset; /* from the start of the region */
	uint64_t size;
};

struct vfb_region_info {
	uint32_t index;
	uint32_t flags; /* VFIO_REGION_INFO_FLAG_* as the kernel reported them */
	uint64_t size;
	uint64_t offset;    /* the region's offset in the device fd: mmap offset of area 0 */
	bool msix_mappable; /* VFIO_REGION_INFO_CAP_MSIX_MAPPABLE */
	/*
	 * -1, or an fd the caller owns (close it when done) to mmap the areas below:
	 *   mmap(NULL, area.size, prot, MAP_SHARED, mmap_fd, info.offset + area.offset)
	 * Present only when the device's policy allows direct mapping and the region has areas.
	 */
	int mmap_fd;
	/* Areas that may be mmapped. 0 when mmap_fd is -1: then every access goes through
	 * vfb_dev_region_read()/write(). A region mappable as a whole reports one area. */
	uint32_t nareas;
	struct vfb_mmap_area areas[VFB_MMAP_AREAS_MAX];
};

/*
 * Region information (REGION_INFO) for VFIO region `index`.
 * Errors: -EINVAL index out of range (as the worker says); -EPROTO malformed answer, or more
 * than VFB_MMAP_AREAS_MAX areas, or an area outside the region (the fd that came is closed).
 * Fds: on success ret->mmap_fd is a new fd owned by the caller (or -1). Each call returns a new
 * fd; on failure no fd is left open.
 */
VFB_EXPORT int vfb_dev_region_info(struct vfb_dev *dev, uint32_t index,
				   struct vfb_region_info *ret);

struct vfb_irq_info {
	uint32_t index; /* VFIO_PCI_INTX_IRQ_INDEX, _MSI_, _MSIX_, _ERR_, _REQ_ */
	uint32_t flags; /* VFIO_IRQ_INFO_* */
	uint32_t count;
};

/* IRQ information (IRQ_INFO) for VFIO IRQ `index`. */
VFB_EXPORT int vfb_dev_irq_info(struct vfb_dev *dev, uint32_t index, struct vfb_irq_info *ret);

/* Size of PCI Express config space; accesses must stay below it. */
#define VFB_CFG_SPACE_SIZE 4096

/*
 * Config space accesses of any length: split into naturally aligned 1, 2 and 4-byte pieces (a
 * 6-byte read at 0x02 is 2 + 4 bytes), each one request, in ascending order. Values are in the
 * device's little-endian byte order, as in config space.
 * Errors: -EINVAL NULL buffer with len > 0, or offset + len beyond VFB_CFG_SPACE_SIZE (checked
 * before anything is sent); request errors. A write that fails part-way has written the pieces
 * before the failing one.
 */
VFB_EXPORT int vfb_dev_cfg_read(struct vfb_dev *dev, uint32_t offset, void *buf, size_t len);
VFB_EXPORT int vfb_dev_cfg_write(struct vfb_dev *dev, uint32_t offset, const void *buf, size_t len);

/*
 * Trapped region (BAR) accesses. Up to 8 bytes go as one access of exactly that size (the size a
 * device register sees); longer ones are split into pieces that fit the worker's message limit.
 * Errors: -EINVAL NULL buffer, offset + len overflow; request errors (-EINVAL out of the region,
 * as the worker checks); -EPROTO an answer of the wrong length.
 */
VFB_EXPORT int vfb_dev_region_read(struct vfb_dev *dev, uint32_t index, uint64_t offset, void *buf,
				   size_t len);
VFB_EXPORT int vfb_dev_region_write(struct vfb_dev *dev, uint32_t index, uint64_t offset,
				    const void *buf, size_t len);

/* DMA permissions of a mapping, as the device sees guest memory. */
#define VFB_DMA_READ  (1u << 0) /* the device may read */
#define VFB_DMA_WRITE (1u << 1) /* the device may write */

/*
 * Maps `size` bytes of `memfd` from `offset` at I/O virtual address `iova` for the device's DMA.
 * The broker checks that `memfd` is a memfd, that the range lies within it, that iova and size
 * are aligned to the IOMMU page size, and the VM's quotas.
 * Errors: -EINVAL size 0, overflow of iova + size or offset + size, prot 0 or unknown bits;
 * -EBADF memfd not open; the broker's refusals (-EINVAL, -EEXIST overlap, -ENOSPC / -EDQUOT
 * quota, ...).
 * Fds: `memfd` stays the caller's; the broker keeps its own reference while mapped.
 */
VFB_EXPORT int vfb_dev_dma_map(struct vfb_dev *dev, int memfd, uint64_t offset, uint64_t iova,
			       uint64_t size, uint32_t prot);

/* Unmaps exactly a range mapped by vfb_dev_dma_map(). Errors: -EINVAL size 0 or overflow;
 * -ENOENT (as the broker says) no such mapping. */
VFB_EXPORT int vfb_dev_dma_unmap(struct vfb_dev *dev, uint64_t iova, uint64_t size);

/* VFIO IRQ indexes (linux/vfio.h values), for convenience. */
#define VFB_IRQ_INTX 0
#define VFB_IRQ_MSI  1
#define VFB_IRQ_MSIX 2
#define VFB_IRQ_ERR  3
#define VFB_IRQ_REQ  4

/*
 * Installs eventfds for vectors [start, start + count) of IRQ `index` (SET_IRQ_FDS). Unmasked
 * vectors signal their eventfd directly from the kernel. More fds than one message may carry are
 * sent in several requests of consecutive vectors (a failure part-way leaves the earlier
 * vectors installed: call again with count 0 to remove them). count 0 removes every fd of the
 * index (fds must then be NULL).
 * Errors: -EINVAL NULL fds with count > 0, start + count overflow, a negative fd; -EBADF an fd
 * not open; the worker's refusals (-EINVAL range beyond the IRQ's count, not an eventfd, ...).
 * Fds: stay the caller's; the worker and kernel keep their own references.
 */
VFB_EXPORT int vfb_dev_set_irq_fds(struct vfb_dev *dev, uint32_t index, uint32_t start,
				   const int *fds, uint32_t count);

/* INTx: `trigger_fd` fires on the interrupt; `resample_fd` (or -1) is signalled by the VMM on
 * EOI to unmask the line (level-triggered resampling). trigger_fd -1 removes both.
 * Errors and fd ownership as vfb_dev_set_irq_fds(). */
VFB_EXPORT int vfb_dev_set_intx_fds(struct vfb_dev *dev, int trigger_fd, int resample_fd);

/* Resets the device (RESET). The worker queues VFB_EVENT_RESET (Command and every BAR as they are
 * after the reset) before it answers, as it does when a config write of the guest initiated an
 * FLR. The config view after a reset is described in worker/DEVICE-IMAGE.md ("Reset"): the
 * guest's BARs and Command are kept, MSI and MSI-X are off.
 * Errors: -ENOTTY (as the worker says) the device cannot reset. */
VFB_EXPORT int vfb_dev_reset(struct vfb_dev *dev);

/* Acknowledges VFB_EVENT_REMOVAL_REQUESTED: the VMM has unplugged the device from its guest and
 * will not touch it again (REMOVAL_ACK). */
VFB_EXPORT int vfb_dev_removal_ack(struct vfb_dev *dev);

enum vfb_event_kind {
	VFB_EVENT_BARS_CHANGED = 1,	 /* Command register or a BAR address changed */
	VFB_EVENT_REMOVAL_REQUESTED = 2, /* unplug, then vfb_dev_removal_ack() */
	VFB_EVENT_WORKER_RESTARTED = 3,	 /* device state lost: re-read info, re-program */
	VFB_EVENT_RESET = 4,		 /* reset: by vfb_dev_reset(), or a guest FLR written */
};

/* BARs 0-5 and the ROM BAR. */
#define VFB_BARS_MAX 7

struct vfb_bar_state {
	uint32_t index;
	uint64_t address; /* guest-programmed */
	bool enabled;	  /* decoding enabled by the Command register */
};

struct vfb_event {
	uint32_t kind;	     /* enum vfb_event_kind; unknown kinds are delivered as they come */
	uint32_t command;    /* Command register after the change */
	uint32_t timeout_ms; /* VFB_EVENT_REMOVAL_REQUESTED: time left to acknowledge */
	uint32_t nbars;	     /* VFB_EVENT_BARS_CHANGED, VFB_EVENT_RESET */
	struct vfb_bar_state bars[VFB_BARS_MAX];
};

/*
 * An fd that polls readable (POLLIN / EPOLLIN, level-triggered) while vfb_dev_next_event() has
 * something to return: an event, or the news that the worker hung up. Owned by the handle: do
 * not read from or close it; watch it with poll/epoll/uv_poll_t. Events that arrive during a
 * request are queued and keep the fd readable.
 */
VFB_EXPORT int vfb_dev_event_fd(const struct vfb_dev *dev);

/*
 * Returns the next event without blocking. Returns 0 and fills *ret; -EAGAIN when there is
 * none; -EPIPE / -ECONNRESET when the worker hung up (the event fd then stays readable: stop
 * watching it and close the handle); -EPROTO / -EBADMSG / -EMSGSIZE when the worker sent
 * something malformed (it is dropped; call again). Any fd that came with an event is closed.
 * Call it until -EAGAIN each time the event fd polls readable.
 */
VFB_EXPORT int vfb_dev_next_event(struct vfb_dev *dev, struct vfb_event *ret);

/* A short name for an event kind ("removal-requested", ...), or "unknown". */
VFB_EXPORT const char *vfb_event_kind_name(uint32_t kind);

/* ----------------------------------------------------------------------------------------------
 * Control client (orchestrator <-> vfio-brokerd)
 */

struct vfb_ctl;

/* Where vfio-brokerd listens by default. */
#define VFB_CTL_SOCKET_DEFAULT "/run/vfio-broker/control.sock"

/*
 * Connects to the broker's control socket at `path` (NULL: VFB_CTL_SOCKET_DEFAULT). `flags`
 * must be 0. Errors: -EINVAL; -ENAMETOOLONG; -ENOENT / -ECONNREFUSED no broker; -EACCES not
 * allowed; -ENOMEM. Fds: the handle owns its socket, epoll fd and eventfd.
 */
VFB_EXPORT int vfb_ctl_connect(const char *path, uint32_t flags, struct vfb_ctl **ret);

/* As vfb_ctl_connect() over a connected SOCK_SEQPACKET socket; takes `fd` on success only. */
VFB_EXPORT int vfb_ctl_connect_fd(int fd, uint32_t flags, struct vfb_ctl **ret);

/* Closes the connection and everything the handle owns. NULL is ignored. */
VFB_EXPORT void vfb_ctl_close(struct vfb_ctl *ctl);

/* As vfb_dev_set_timeout() / vfb_dev_last_error(). */
VFB_EXPORT int vfb_ctl_set_timeout(struct vfb_ctl *ctl, int timeout_ms);
VFB_EXPORT const char *vfb_ctl_last_error(const struct vfb_ctl *ctl);

/* Longest VM name, in bytes. */
#define VFB_VM_NAME_MAX 64

/* Checks a VM name: 1 to VFB_VM_NAME_MAX bytes of [A-Za-z0-9._-], not "." or "..".
 * Returns 0 or -EINVAL. */
VFB_EXPORT int vfb_vm_name_check(const char *vm);

#define VFB_CTL_ADD_BIND       (1u << 0) /* bind the device to vfio-pci first */
#define VFB_CTL_ADD_ALLOW_MMAP (1u << 1) /* let the VMM mmap BARs directly */
/* Which VMM sockets the worker serves; neither bit: the broker's configured default. */
#define VFB_CTL_ADD_NATIVE    (1u << 2) /* this library's protocol (SOCK_SEQPACKET) */
#define VFB_CTL_ADD_VFIO_USER (1u << 3) /* vfio-user 0.1 (SOCK_STREAM), for stock VMMs */

/* What a worker serves: VFB_CTL_PROTO_NATIVE, _VFIO_USER or both bits. */
#define VFB_CTL_PROTO_NATIVE	1u
#define VFB_CTL_PROTO_VFIO_USER 2u
#define VFB_CTL_PROTO_BOTH	3u
/* "native", "vfio-user", "both" or "unknown". */
VFB_EXPORT const char *vfb_ctl_proto_name(uint32_t protocol);

struct vfb_ctl_add_request {
	const char *bdf; /* any form vfb_bdf_normalize() accepts */
	const char *vm;	 /* see vfb_vm_name_check() */
	uint32_t owner_uid;
	uint32_t owner_gid;
	uint32_t max_dma_mappings; /* 0: the broker's default */
	uint64_t max_pinned_bytes; /* 0: the broker's default */
	uint32_t flags;		   /* VFB_CTL_ADD_* */
};

/* Longest path of a unix socket (sun_path), with its NUL. */
#define VFB_SOCKET_PATH_MAX 108

struct vfb_ctl_add_reply {
	char socket_path[VFB_SOCKET_PATH_MAX]; /* the worker's native VMM socket, or "" */
	uint32_t worker_pid;
	uint32_t iommu_group;
	char iommu_backend[32]; /* "vfio-type1v2", "vfio-type1" or "iommufd" */
	uint32_t protocol;	/* VFB_CTL_PROTO_* the worker serves */
	char vfio_user_socket_path[VFB_SOCKET_PATH_MAX]; /* its vfio-user socket, or "" */
};

/*
 * Assigns a device to a VM (AddDevice; also hot-plug on a running VM).
 * Errors: -EINVAL bad BDF, VM name or flags (nothing sent); the broker's refusals (-EPERM not
 * in the allowlist, -EEXIST already assigned, -EBUSY group not viable, ...); -EPROTO an answer
 * that does not fit the reply structure.
 */
VFB_EXPORT int vfb_ctl_add(struct vfb_ctl *ctl, const struct vfb_ctl_add_request *req,
			   struct vfb_ctl_add_reply *ret);

#define VFB_CTL_REMOVE_FORCE (1u << 0) /* do not ask the VMM first */

/*
 * Removes a device (RemoveDevice): the VMM is asked to unplug and may acknowledge within
 * `timeout_ms` (0: the broker's default), then removal is forced. *ret_acknowledged (may be
 * NULL) says whether the VMM acknowledged. Since the broker answers only after that, the
 * handle's timeout is extended for this call by timeout_ms (by 30 s when timeout_ms is 0, and
 * not at all with VFB_CTL_REMOVE_FORCE).
 * Errors: -EINVAL bad BDF or flags; -ENOENT (as the broker says) not assigned.
 */
VFB_EXPORT int vfb_ctl_remove(struct vfb_ctl *ctl, const char *bdf, uint32_t timeout_ms,
			      uint32_t flags, bool *ret_acknowledged);

enum vfb_ctl_state {
	VFB_CTL_STATE_UNSPECIFIED = 0,
	VFB_CTL_STATE_STARTING = 1,
	VFB_CTL_STATE_READY = 2,     /* worker up, no VMM connected */
	VFB_CTL_STATE_CONNECTED = 3, /* a VMM is connected */
	VFB_CTL_STATE_REMOVING = 4,
	VFB_CTL_STATE_FAULTED = 5, /* worker died or hung; see last_fault */
};

/* "starting", "ready", ... or "unknown". */
VFB_EXPORT const char *vfb_ctl_state_name(uint32_t state);

struct vfb_ctl_irq_state {
	uint32_t index;	  /* VFIO IRQ index */
	uint32_t enabled; /* vectors with a trigger installed */
};

/* One device as the broker reports it. Strings are never NULL. The strings and irqs belong to the
 * device: they are freed with it (vfb_ctl_device_free(), vfb_ctl_device_list_free()), never one
 * by one. */
struct vfb_ctl_device {
	char *bdf;
	char *vm;
	uint32_t state; /* enum vfb_ctl_state */
	uint32_t worker_pid;
	uint32_t dma_mappings; /* of the device's VM */
	uint64_t pinned_bytes; /* of the device's VM */
	uint32_t restarts;
	uint32_t resets;
	uint32_t iommu_group;
	char *socket_path; /* native; "" when not served */
	char *last_fault;
	size_t nirqs;
	struct vfb_ctl_irq_state *irqs;
	uint32_t protocol;	     /* VFB_CTL_PROTO_* */
	char *vfio_user_socket_path; /* "" when not served */
};

/* Status of one device (DeviceStatus). *ret is freed with vfb_ctl_device_free().
 * Errors: -EINVAL bad BDF; -ENOENT (as the broker says) not assigned; -ENOMEM. */
VFB_EXPORT int vfb_ctl_status(struct vfb_ctl *ctl, const char *bdf, struct vfb_ctl_device **ret);
VFB_EXPORT void vfb_ctl_device_free(struct vfb_ctl_device *d);

/* Every assigned device (ListDevices), in BDF order: *ret is an array of *ret_n devices, freed
 * with vfb_ctl_device_list_free(*ret, *ret_n). Asks for a page at a time, each as many devices
 * as the broker fits in one control datagram (one request for a few hundred of the usual
 * sizes), until the broker says no device follows, so any number fits; a device added or removed
 * meanwhile may or may not be listed. Errors: -ENOMEM, -EPROTO (a page cursor that does not move
 * forward), request errors. */
VFB_EXPORT int vfb_ctl_list(struct vfb_ctl *ctl, struct vfb_ctl_device **ret, size_t *ret_n);
VFB_EXPORT void vfb_ctl_device_list_free(struct vfb_ctl_device *list, size_t n);

/* Broker metrics in the Prometheus text format (Metrics); *ret is a NUL-terminated string the
 * caller frees with free(). */
VFB_EXPORT int vfb_ctl_metrics(struct vfb_ctl *ctl, char **ret);

enum vfb_ctl_event_kind {
	VFB_CTL_EVENT_DEVICE_ADDED = 1,
	VFB_CTL_EVENT_DEVICE_REMOVED = 2,
	VFB_CTL_EVENT_WORKER_CRASHED = 3,
	VFB_CTL_EVENT_WORKER_HUNG = 4,
	VFB_CTL_EVENT_WORKER_RESTARTED = 5,
	VFB_CTL_EVENT_VMM_CONNECTED = 6,
	VFB_CTL_EVENT_VMM_DISCONNECTED = 7,
};

/* "device-added", ... or "unknown". */
VFB_EXPORT const char *vfb_ctl_event_kind_name(uint32_t kind);

struct vfb_ctl_event {
	uint32_t kind; /* enum vfb_ctl_event_kind */
	char *bdf;     /* never NULL */
	char *vm;
	char *detail;
	uint64_t timestamp_ns; /* CLOCK_REALTIME */
};

/* Asks the broker to send events on this connection (SubscribeEvents). Then watch
 * vfb_ctl_event_fd() and call vfb_ctl_next_event(). */
VFB_EXPORT int vfb_ctl_subscribe(struct vfb_ctl *ctl);

/* As vfb_dev_event_fd(): readable while vfb_ctl_next_event() has something to return. */
VFB_EXPORT int vfb_ctl_event_fd(const struct vfb_ctl *ctl);

/* As vfb_dev_next_event(); *ret is freed with vfb_ctl_event_free(). */
VFB_EXPORT int vfb_ctl_next_event(struct vfb_ctl *ctl, struct vfb_ctl_event **ret);
VFB_EXPORT void vfb_ctl_event_free(struct vfb_ctl_event *ev);

#ifdef __cplusplus
}
#endif

#endif
