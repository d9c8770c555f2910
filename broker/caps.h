/*
 * caps: the capabilities vfio-brokerd keeps after start-up, and the drop to exactly that set
 * (libcap-ng). The table in caps.c is the documentation: each capability with the reason the
 * broker cannot do without it. Everything else, including the bounding and ambient sets, goes.
 */
#ifndef VB_BROKER_CAPS_H
#define VB_BROKER_CAPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct brk_cap {
	int cap; /* CAP_* */
	const char *name;
	const char *why;
};

/* The kept set, in the order of caps.c's table. */
extern const struct brk_cap brk_caps_kept[];
extern const size_t brk_caps_nkept;

/* The kept set as the CapEff / CapPrm bit mask of /proc/<pid>/status. */
uint64_t brk_caps_mask(void);

/* What brk_caps_drop() could not do, for the caller to report. */
struct brk_caps_outcome {
	/* The bounding set still holds more than the kept set: no CAP_SETPCAP to reduce it (the
	 * service user; the unit's CapabilityBoundingSet= is then what bounds it). */
	bool bounding_left;
	/* Kept capabilities the process did not have to begin with (brk_caps_mask() bits): a
	 * unit without AmbientCapabilities=, or an unprivileged run. */
	uint64_t missing;
};

/*
 * Reduces the process to the kept set: effective and permitted equal to it, inheritable and
 * ambient empty, the bounding set equal to it when the process may change it (CAP_SETPCAP),
 * the ids unchanged. A process that lacks one of the kept capabilities keeps what it has of the
 * set. Returns 0 or a negative errno; *out says what was left undone.
 */
int brk_caps_drop(struct brk_caps_outcome *out);

/*
 * Right before the broker re-executes itself: puts the kept capabilities it has into its
 * inheritable and ambient sets, the only way a non-root process keeps capabilities across
 * execve of a file without file capabilities. The new image's brk_caps_drop() clears both again
 * before it starts any worker. Errors: -EIO, -EPERM.
 */
int brk_caps_keep_across_exec(void);

#endif
