/*
 * caps: vfio-brokerd's capability set. Responsible for keeping exactly what the table below
 * lists (a guest test compares the running broker's CapEff with brk_caps_mask()). Trusts
 * libcap-ng to apply the sets atomically with capset() and PR_CAPBSET_DROP.
 *
 * Why these and no others. Under systemd the broker runs as its own system user, vfio-broker,
 * given exactly these four as ambient capabilities (vfio-brokerd.service AmbientCapabilities=,
 * CapabilityBoundingSet=). The VFIO nodes /dev/vfio/vfio and /dev/vfio/<group> are that user's
 * group's (deploy/70-vfio-broker.rules, mode 0660) and the PCI attributes it reads are world-
 * readable, so no CAP_DAC_OVERRIDE is needed. Only binding ([devices] allow_bind) writes root's
 * sysfs attributes (driver_override, unbind, drivers_probe: owner root, mode 0200/0644); its
 * drop-in (deploy/allow-bind.conf) runs the broker as uid 0 instead, with the same four kept.
 *
 *   CAP_SETUID, CAP_SETGID  The worker runs as an unprivileged uid/gid (a range or a user from
 *                           the configuration). sbx_spawn_worker() writes the child's uid_map and
 *                           gid_map to map it to an id other than the broker's own, and the child
 *                           drops supplementary groups and switches ids: all need these two in
 *                           the broker's user namespace. Creating the user namespace itself
 *                           (clone3 CLONE_NEWUSER, and with it the pid, net, mount, ipc and uts
 *                           namespaces the new user namespace owns) needs no capability.
 *   CAP_IPC_LOCK            VFIO_IOMMU_MAP_DMA pins the VM's pages and charges them to the
 *                           broker's RLIMIT_MEMLOCK unless the caller has CAP_IPC_LOCK. The
 *                           broker enforces its own per-VM pinned-bytes quota (dma.h); with this
 *                           capability the quota, not a process-wide rlimit, is the limit.
 *   CAP_CHOWN               Each device's VMM socket is handed to the AddDevice owner uid/gid
 *                           (fchownat, mode 0600) so that only that VMM can connect; the
 *                           control socket goes to the admin uid/gid at start.
 *
 * Deliberately not kept: CAP_SYS_ADMIN (no mounts in the broker's namespace; the worker's
 * pivot_root happens in its own mount namespace, owned by its own user namespace), CAP_KILL
 * (workers are signalled through pidfds, and the broker owns the user namespace they live in),
 * CAP_SYS_RESOURCE (rlimits are only lowered for workers), CAP_DAC_OVERRIDE/READ_SEARCH (the
 * broker opens only what its uid or group may), CAP_SYS_RAWIO (no VFIO no-IOMMU mode), CAP_NET_*
 * (unix sockets only), CAP_SYS_PTRACE. Kernels that restrict unprivileged user namespaces (Debian's
 * kernel.unprivileged_userns_clone=0) would need CAP_SYS_ADMIN for the clone; the broker does
 * not grant itself that and spawning then fails with a clear error instead.
 */
#include "base.h"
#include "caps.h"

#include <cap-ng.h>
#include <errno.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <linux/capability.h>

const struct brk_cap brk_caps_kept[] = {
    {CAP_CHOWN, "cap_chown", "hand VMM sockets to their owner"},
    {CAP_SETGID, "cap_setgid", "map and switch to worker gids"},
    {CAP_SETUID, "cap_setuid", "map and switch to worker uids"},
    {CAP_IPC_LOCK, "cap_ipc_lock", "pin DMA memory beyond RLIMIT_MEMLOCK"},
};
const size_t brk_caps_nkept = ARRAY_SIZE(brk_caps_kept);

uint64_t brk_caps_mask(void)
{
	uint64_t m = 0;

	for (size_t i = 0; i < brk_caps_nkept; i++)
		m |= 1ull << brk_caps_kept[i].cap;
	return m;
}

/* Whether the bounding set holds a capability outside the kept set. */
static bool bounding_exceeds_kept(void)
{
	uint64_t keep = brk_caps_mask();
	int r;

	/* Up to the running kernel's last capability, which may be newer than our headers'. */
	for (unsigned long c = 0; c < 64; c++) {
		r = prctl(PR_CAPBSET_READ, c, 0, 0, 0);
		if (r < 0)
			break;
		if (r == 1 && !(keep >> c & 1))
			return true;
	}
	return false;
}

int brk_caps_drop(struct brk_caps_outcome *out)
{
	bool have[ARRAY_SIZE(brk_caps_kept)];
	capng_select_t sel = CAPNG_SELECT_CAPS | CAPNG_SELECT_AMBIENT;
	int r;

	out->bounding_left = false;
	out->missing = 0;
	if (capng_get_caps_process() < 0)
		return -EIO;
	/* Keep only what we have: an unprivileged run cannot gain anything. */
	for (size_t i = 0; i < brk_caps_nkept; i++) {
		have[i] = capng_have_capability(CAPNG_PERMITTED, (unsigned)brk_caps_kept[i].cap);
		if (!have[i])
			out->missing |= 1ull << brk_caps_kept[i].cap;
	}
	/*
	 * Dropping from the bounding set takes CAP_SETPCAP, which uid 0 started by hand has and
	 * the service user does not: there systemd has already cut the bounding set to
	 * CapabilityBoundingSet=, and with NoNewPrivileges= nothing could use the rest anyway.
	 */
	if (bounding_exceeds_kept()) {
		if (capng_have_capability(CAPNG_EFFECTIVE, CAP_SETPCAP))
			sel |= CAPNG_SELECT_BOUNDS;
		else
			out->bounding_left = true;
	}
	capng_clear(CAPNG_SELECT_ALL);
	for (size_t i = 0; i < brk_caps_nkept; i++) {
		if (!have[i])
			continue;
		r = capng_update(CAPNG_ADD, CAPNG_EFFECTIVE | CAPNG_PERMITTED | CAPNG_BOUNDING_SET,
				 (unsigned)brk_caps_kept[i].cap);
		if (r < 0)
			return -EINVAL;
	}
	/*
	 * Ambient capabilities are how systemd hands the four to a non-root user; they must not
	 * stay, or every process the broker executes (the workers) would start with them. Emptying
	 * the inheritable set already makes the kernel drop them; clearing them explicitly keeps
	 * that from resting on one rule. libcap-ng applies the bounding set first, while
	 * CAP_SETPCAP is still effective.
	 */
	r = capng_apply(sel);
	if (r < 0)
		return r == -4 || r == -5 ? -EPERM : -EINVAL;
	return 0;
}

int brk_caps_keep_across_exec(void)
{
	int r;

	if (capng_get_caps_process() < 0)
		return -EIO;
	for (size_t i = 0; i < brk_caps_nkept; i++)
		if (capng_have_capability(CAPNG_PERMITTED, (unsigned)brk_caps_kept[i].cap))
			capng_update(CAPNG_ADD, CAPNG_INHERITABLE, (unsigned)brk_caps_kept[i].cap);
	r = capng_apply(CAPNG_SELECT_CAPS);
	if (r < 0)
		return -EPERM;
	/* A capability must be permitted and inheritable to be raised into the ambient set. */
	for (size_t i = 0; i < brk_caps_nkept; i++) {
		unsigned long c = (unsigned long)brk_caps_kept[i].cap;

		if (capng_have_capability(CAPNG_PERMITTED, (unsigned)c) &&
		    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, c, 0, 0) < 0)
			return -errno;
	}
	return 0;
}
