/*
 * config: vfio-brokerd's configuration file (INI, parsed with libinih). Every key is known,
 * every value is checked and range-checked; the first problem refuses the whole file with
 * "FILE:LINE: reason". See broker/vfio-brokerd.conf.example for every section and key.
 */
#ifndef VB_BROKER_CONFIG_H
#define VB_BROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "bdf.h"
#include "err.h"

/* The Linux kernel's own default for vfio_iommu_type1 dma_entry_limit. */
#define BRK_DMA_MAPPINGS_MAX 65535u
/* The most pre-started workers [worker] prestart may ask for (pool.h). */
#define BRK_PRESTART_MAX 64u

enum brk_restart {
	BRK_RESTART_NEVER,
	BRK_RESTART_ON_FAILURE,
};

/* The same three modes as policy/seccomp.h's sbx_seccomp_mode. */
enum brk_seccomp_mode {
	BRK_SECCOMP_KILL, /* a call outside the policy kills the process (production) */
	BRK_SECCOMP_LOG,  /* allowed but logged by the kernel: for writing policies only */
	BRK_SECCOMP_OFF,  /* no filter at all: debugging only */
};

/* One allowlist entry: a device address or a vendor:device id pair. */
struct brk_allow {
	bool is_id;
	char bdf[VB_BDF_LEN];
	uint16_t vendor, device;
	unsigned line;
};

struct brk_worker_rlimits {
	uint64_t nofile;  /* RLIMIT_NOFILE */
	uint64_t nproc;	  /* RLIMIT_NPROC */
	uint64_t fsize;	  /* RLIMIT_FSIZE, bytes */
	uint64_t memlock; /* RLIMIT_MEMLOCK, bytes */
	uint64_t core;	  /* RLIMIT_CORE, bytes */
	uint64_t as;	  /* RLIMIT_AS, bytes; 0: unlimited */
};

/* The VMM protocols a worker serves (the HANDOFF's bits). */
#define BRK_PROTO_NATIVE    1u /* proto/device.proto, SOCK_SEQPACKET */
#define BRK_PROTO_VFIO_USER 2u /* vfio-user 0.1, SOCK_STREAM */
#define BRK_PROTO_BOTH	    (BRK_PROTO_NATIVE | BRK_PROTO_VFIO_USER)

/* "native", "vfio-user" or "both" for 1, 2, 3; "none" otherwise. */
const char *brk_proto_name(uint32_t protocols);
/* The bits of "native", "vfio-user" or "both"; -EINVAL for anything else. */
int brk_proto_parse(const char *s, uint32_t *ret);

struct brk_config {
	char *path;

	/* [broker] */
	char *control_socket;
	uid_t admin_uid;
	gid_t admin_gid;
	bool admin_gid_set;
	char *runtime_dir;
	int log_level;
	bool log_level_set;
	enum brk_seccomp_mode broker_seccomp;

	/* [devices] */
	struct brk_allow *allow;
	size_t nallow;
	bool allow_bind;
	uint32_t protocols; /* BRK_PROTO_* bits an AddDevice without a protocol gets */

	/* [limits] */
	uint32_t max_dma_mappings;
	uint64_t max_pinned_bytes;
	uint32_t max_vms;
	uint32_t max_devices;
	uint32_t remove_timeout_ms;

	/* [worker] */
	char *worker_path;
	bool worker_user_set; /* user= given: every worker runs as worker_uid/worker_gid */
	uid_t worker_uid_first, worker_uid_last; /* uid_range=: one uid (and gid) per worker */
	gid_t worker_gid;
	struct brk_worker_rlimits rlimits;
	enum brk_seccomp_mode seccomp;
	uint32_t heartbeat_interval_ms;
	uint32_t heartbeat_timeout_ms;
	enum brk_restart restart;
	uint32_t restart_max;
	uint32_t prestart; /* sandboxed workers started ahead of AddDevice (pool.h); 0: none */
};

/*
 * Reads and validates `path`. Returns 0 and a new configuration in *ret, or a negative errno
 * with a one-line "FILE:LINE: reason" (or "FILE: reason" when no line applies) in `err`:
 *   -ENOENT, -EACCES, ... the file cannot be opened or read;
 *   -EPERM    the file is writable by group or others;
 *   -EINVAL   a syntax error, unknown section or key, bad or out-of-range value, missing key.
 */
int brk_config_load(const char *path, struct brk_config **ret, struct vb_err *err);
void brk_config_free(struct brk_config *c);

/*
 * The AddDevice allowlist check: 0 when the device at `bdf` (canonical form) with ids
 * vendor:device may be assigned, else -EPERM with a reason naming the allowlist's lines.
 */
int brk_config_check_device(const struct brk_config *c, const char *bdf, uint16_t vendor,
			    uint16_t device, struct vb_err *err);

/* The configuration as a valid file, for --check-config --verbose and for the logs. */
int brk_config_dump(const struct brk_config *c, char **ret);

#endif
