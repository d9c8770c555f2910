/*
 * util: the library's version, PCI address parsing and the names of states and event kinds.
 * Pure functions of their arguments; they trust no input string.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "base.h"
#include "bdf.h"
#include "vfiobroker/client.h"

const char *vfb_version(void)
{
	return VFB_VERSION_STRING;
}

int vfb_bdf_normalize(const char *bdf, char *out, size_t outlen)
{
	if (!bdf || !out)
		return -EINVAL;
	return vb_bdf_normalize(bdf, out, outlen);
}

const char *vfb_event_kind_name(uint32_t kind)
{
	static const char *const names[] = {
	    [VFB_EVENT_BARS_CHANGED] = "bars-changed",
	    [VFB_EVENT_REMOVAL_REQUESTED] = "removal-requested",
	    [VFB_EVENT_WORKER_RESTARTED] = "worker-restarted",
	    [VFB_EVENT_RESET] = "reset",
	};

	if (kind < ARRAY_SIZE(names) && names[kind])
		return names[kind];
	return "unknown";
}

const char *vfb_ctl_state_name(uint32_t state)
{
	static const char *const names[] = {
	    [VFB_CTL_STATE_STARTING] = "starting",   [VFB_CTL_STATE_READY] = "ready",
	    [VFB_CTL_STATE_CONNECTED] = "connected", [VFB_CTL_STATE_REMOVING] = "removing",
	    [VFB_CTL_STATE_FAULTED] = "faulted",
	};

	if (state < ARRAY_SIZE(names) && names[state])
		return names[state];
	return "unknown";
}

const char *vfb_ctl_event_kind_name(uint32_t kind)
{
	static const char *const names[] = {
	    [VFB_CTL_EVENT_DEVICE_ADDED] = "device-added",
	    [VFB_CTL_EVENT_DEVICE_REMOVED] = "device-removed",
	    [VFB_CTL_EVENT_WORKER_CRASHED] = "worker-crashed",
	    [VFB_CTL_EVENT_WORKER_HUNG] = "worker-hung",
	    [VFB_CTL_EVENT_WORKER_RESTARTED] = "worker-restarted",
	    [VFB_CTL_EVENT_VMM_CONNECTED] = "vmm-connected",
	    [VFB_CTL_EVENT_VMM_DISCONNECTED] = "vmm-disconnected",
	};

	if (kind < ARRAY_SIZE(names) && names[kind])
		return names[kind];
	return "unknown";
}
