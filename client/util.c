/*
 * util: the library's version, PCI address parsing and the names of states and event kinds.
 * Pure functions of their arguments; they trust no input string.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "vfiobroker/client.h"

const char *vfb_version(void)
{
	return VFB_VERSION_STRING;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parses exactly min..max hex digits from *s up to a non-hex character. */
static int hexfield(const char **s, size_t min, size_t max, unsigned long *ret)
{
	unsigned long v = 0;
	size_t n = 0;

	while (hexval(**s) >= 0) {
		if (++n > max)
			return -EINVAL;
		v = v * 16 + (unsigned long)hexval(**s);
		(*s)++;
	}
	if (n < min)
		return -EINVAL;
	*ret = v;
	return 0;
}

int vfb_bdf_normalize(const char *bdf, char *out, size_t outlen)
{
	unsigned long dom = 0, bus, dev, fn;
	const char *s = bdf;
	int n;

	if (!bdf || !out)
		return -EINVAL;
	/* A short form "BB:DD.F" has exactly one colon. */
	if (strchr(bdf, ':') && strchr(bdf, ':') != strrchr(bdf, ':')) {
		if (hexfield(&s, 4, 8, &dom) < 0 || *s++ != ':')
			return -EINVAL;
	}
	if (hexfield(&s, 2, 2, &bus) < 0 || *s++ != ':')
		return -EINVAL;
	if (hexfield(&s, 2, 2, &dev) < 0 || dev > 0x1f || *s++ != '.')
		return -EINVAL;
	if (hexfield(&s, 1, 1, &fn) < 0 || fn > 7 || *s != '\0')
		return -EINVAL;
	n = snprintf(out, outlen, "%04lx:%02lx:%02lx.%lx", dom, bus, dev, fn);
	if (n < 0 || (size_t)n >= outlen)
		return -ENOBUFS;
	return 0;
}

const char *vfb_event_kind_name(uint32_t kind)
{
	static const char *const names[] = {
	    [VFB_EVENT_BARS_CHANGED] = "bars-changed",
	    [VFB_EVENT_REMOVAL_REQUESTED] = "removal-requested",
	    [VFB_EVENT_WORKER_RESTARTED] = "worker-restarted",
	    [VFB_EVENT_RESET] = "reset",
	};

	if (kind < sizeof(names) / sizeof(names[0]) && names[kind])
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

	if (state < sizeof(names) / sizeof(names[0]) && names[state])
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

	if (kind < sizeof(names) / sizeof(names[0]) && names[kind])
		return names[kind];
	return "unknown";
}
