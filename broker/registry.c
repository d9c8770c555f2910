/*
 * registry: the broker's table of VMs and devices and the device lifecycle. Responsible for
 * uniqueness (one record per PCI address across all VMs), the configured maxima, and refusing
 * lifecycle transitions that make no sense. Trusts its callers (the daemon) to pass canonical
 * BDFs; checks VM names itself because they come from the control socket.
 */
#include "registry.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "log.h"

struct brk_registry {
	struct brk_dev_rec *devs, **devs_tail;
	/* The same devices in BDF order, for ListDevices' pages and lookups by BDF: kept sorted
	 * as devices come and go (a binary search and a memmove of pointers each), so that no
	 * request sorts or copies the registry. Grows by doubling up to max_devs. */
	struct brk_dev_rec **by_bdf;
	uint32_t by_bdf_cap;
	struct brk_vm *vms, **vms_tail;
	uint32_t ndevs, nvms;
	uint32_t max_devs, max_vms;
	uint64_t next_id;
};

/* The lifecycle, as data: allowed[from] is the set of states `from` may move to.
 *   STARTING     -> READY (HANDOFF acknowledged), REMOVING (removed before it came up),
 *                   FAILED_START (a restarted worker failed), ABANDONED (an AddDevice's worker
 *                   failed), FAULTED (a restart could not even be started)
 *   READY        -> CONNECTED, REMOVING, FAILING
 *   CONNECTED    -> READY (the VMM went away), REMOVING, FAILING
 *   REMOVING     -> nothing: the record is dropped once the worker is reaped (a worker that
 *                   fails while being removed does not change that)
 *   FAULTED      -> REMOVING (a new AddDevice drops the record instead)
 *   FAILING      -> STARTING (restart policy), FAULTED (no restart left), REMOVING
 *   FAILED_START -> FAULTED (reaped), REMOVING
 *   ABANDONED    -> REMOVING (else dropped when reaped) */
#define ST(s) (1u << (s))
static const unsigned allowed[] = {
    [BRK_DEV_STARTING] = ST(BRK_DEV_READY) | ST(BRK_DEV_REMOVING) | ST(BRK_DEV_FAILED_START) |
			 ST(BRK_DEV_ABANDONED) | ST(BRK_DEV_FAULTED),
    [BRK_DEV_READY] = ST(BRK_DEV_CONNECTED) | ST(BRK_DEV_REMOVING) | ST(BRK_DEV_FAILING),
    [BRK_DEV_CONNECTED] = ST(BRK_DEV_READY) | ST(BRK_DEV_REMOVING) | ST(BRK_DEV_FAILING),
    [BRK_DEV_REMOVING] = 0,
    [BRK_DEV_FAULTED] = ST(BRK_DEV_REMOVING),
    [BRK_DEV_FAILING] = ST(BRK_DEV_STARTING) | ST(BRK_DEV_FAULTED) | ST(BRK_DEV_REMOVING),
    [BRK_DEV_FAILED_START] = ST(BRK_DEV_FAULTED) | ST(BRK_DEV_REMOVING),
    [BRK_DEV_ABANDONED] = ST(BRK_DEV_REMOVING),
};

static const char *const state_names[] = {
    [BRK_DEV_STARTING] = "starting",	     [BRK_DEV_READY] = "ready",
    [BRK_DEV_CONNECTED] = "connected",	     [BRK_DEV_REMOVING] = "removing",
    [BRK_DEV_FAULTED] = "faulted",	     [BRK_DEV_FAILING] = "failing",
    [BRK_DEV_FAILED_START] = "failed-start", [BRK_DEV_ABANDONED] = "abandoned",
};

_Static_assert(ARRAY_SIZE(allowed) == BRK_DEV_STATE_LAST + 1, "a state without transitions");
_Static_assert(ARRAY_SIZE(state_names) == BRK_DEV_STATE_LAST + 1, "a state without a name");

static bool state_valid(enum brk_dev_state s)
{
	return s >= BRK_DEV_STARTING && s <= BRK_DEV_STATE_LAST;
}

int brk_registry_new(uint32_t max_vms, uint32_t max_devices, struct brk_registry **ret)
{
	struct brk_registry *r;

	if (!max_vms || !max_devices)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->devs_tail = &r->devs;
	r->vms_tail = &r->vms;
	r->max_devs = max_devices;
	r->max_vms = max_vms;
	r->next_id = 1;
	*ret = r;
	return 0;
}

void brk_registry_free(struct brk_registry *r)
{
	if (!r)
		return;
	while (r->devs) {
		struct brk_dev_rec *d = r->devs;

		r->devs = d->next;
		free(d);
	}
	while (r->vms) {
		struct brk_vm *v = r->vms;

		r->vms = v->next;
		free(v);
	}
	free(r->by_bdf);
	free(r);
}

bool brk_registry_valid_vm_name(const char *name)
{
	size_t n = strlen(name);

	if (n == 0 || n > BRK_VM_NAME_MAX || name[0] == '.' || name[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!isalnum(c) && c != '.' && c != '_' && c != '-')
			return false;
	}
	return true;
}

static bool bdf_looks_canonical(const char *bdf)
{
	static const char pat[] = "xxxx:xx:xx.x";

	if (strlen(bdf) != sizeof(pat) - 1)
		return false;
	for (size_t i = 0; pat[i]; i++) {
		if (pat[i] == 'x'
			? !(isdigit((unsigned char)bdf[i]) || (bdf[i] >= 'a' && bdf[i] <= 'f'))
			: bdf[i] != pat[i])
			return false;
	}
	return true;
}

/* The position of the first device whose BDF is not below `bdf` in by_bdf (ndevs: none). */
static uint32_t reg_lower_bound(const struct brk_registry *r, const char *bdf)
{
	uint32_t lo = 0, hi = r->ndevs;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (strcmp(r->by_bdf[mid]->bdf, bdf) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Room in by_bdf for one more device; nothing changes on failure. */
static int reg_index_reserve(struct brk_registry *r)
{
	struct brk_dev_rec **grown;
	uint32_t cap;

	if (r->ndevs < r->by_bdf_cap)
		return 0;
	cap = r->by_bdf_cap ? r->by_bdf_cap * 2 : 16;
	if (cap > r->max_devs)
		cap = r->max_devs;
	grown = realloc(r->by_bdf, cap * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	r->by_bdf = grown;
	r->by_bdf_cap = cap;
	return 0;
}

struct brk_dev_rec *brk_registry_find(const struct brk_registry *r, const char *bdf)
{
	uint32_t i = reg_lower_bound(r, bdf);

	return i < r->ndevs && !strcmp(r->by_bdf[i]->bdf, bdf) ? r->by_bdf[i] : NULL;
}

struct brk_vm *brk_registry_find_vm(const struct brk_registry *r, const char *name)
{
	for (struct brk_vm *v = r->vms; v; v = v->next)
		if (!strcmp(v->name, name))
			return v;
	return NULL;
}

int brk_registry_add(struct brk_registry *r, const char *bdf, const char *vm,
		     struct brk_dev_rec **ret, bool *ret_vm_created)
{
	struct brk_vm *v;
	struct brk_dev_rec *d;
	bool created = false;
	uint32_t at;

	if (!brk_registry_valid_vm_name(vm) || !bdf_looks_canonical(bdf))
		return -EINVAL;
	if (brk_registry_find(r, bdf))
		return -EEXIST;
	if (r->ndevs >= r->max_devs)
		return -ENOSPC;
	if (reg_index_reserve(r) < 0)
		return -ENOMEM;
	v = brk_registry_find_vm(r, vm);
	if (!v) {
		if (r->nvms >= r->max_vms)
			return -ENOSPC;
		v = calloc(1, sizeof(*v));
		if (!v)
			return -ENOMEM;
		snprintf(v->name, sizeof(v->name), "%s", vm);
		created = true;
	}
	d = calloc(1, sizeof(*d));
	if (!d) {
		if (created)
			free(v);
		return -ENOMEM;
	}
	if (created) {
		*r->vms_tail = v;
		r->vms_tail = &v->next;
		r->nvms++;
	}
	snprintf(d->bdf, sizeof(d->bdf), "%s", bdf);
	d->vm = v;
	d->state = BRK_DEV_STARTING;
	d->id = r->next_id++;
	v->ndevices++;
	*r->devs_tail = d;
	r->devs_tail = &d->next;
	at = reg_lower_bound(r, d->bdf);
	memmove(&r->by_bdf[at + 1], &r->by_bdf[at], (r->ndevs - at) * sizeof(*r->by_bdf));
	r->by_bdf[at] = d;
	r->ndevs++;
	if (ret_vm_created)
		*ret_vm_created = created;
	*ret = d;
	return 0;
}

void brk_registry_restore_id(struct brk_registry *r, struct brk_dev_rec *d, uint64_t id,
			     uint64_t next)
{
	d->id = id;
	if (r->next_id <= id)
		r->next_id = id + 1;
	if (r->next_id < next)
		r->next_id = next;
}

void brk_registry_remove(struct brk_registry *r, struct brk_dev_rec *d)
{
	struct brk_dev_rec **pp;
	uint32_t at;

	for (pp = &r->devs; *pp; pp = &(*pp)->next) {
		if (*pp != d)
			continue;
		*pp = d->next;
		if (r->devs_tail == &d->next)
			r->devs_tail = pp;
		at = reg_lower_bound(r, d->bdf);
		memmove(&r->by_bdf[at], &r->by_bdf[at + 1],
			(r->ndevs - at - 1) * sizeof(*r->by_bdf));
		r->ndevs--;
		d->vm->ndevices--;
		free(d);
		return;
	}
}

int brk_registry_drop_vm(struct brk_registry *r, struct brk_vm *vm)
{
	struct brk_vm **pp;

	if (vm->ndevices)
		return -EBUSY;
	for (pp = &r->vms; *pp; pp = &(*pp)->next) {
		if (*pp != vm)
			continue;
		*pp = vm->next;
		if (r->vms_tail == &vm->next)
			r->vms_tail = pp;
		r->nvms--;
		free(vm);
		return 0;
	}
	return -ENOENT;
}

struct brk_dev_rec *brk_registry_first(const struct brk_registry *r)
{
	return r->devs;
}

struct brk_vm *brk_registry_first_vm(const struct brk_registry *r)
{
	return r->vms;
}

uint32_t brk_registry_after(const struct brk_registry *r, const char *after,
			    struct brk_dev_rec *const **ret)
{
	uint32_t i = reg_lower_bound(r, after);

	if (i < r->ndevs && !strcmp(r->by_bdf[i]->bdf, after))
		i++;
	*ret = r->by_bdf + i;
	return r->ndevs - i;
}

uint32_t brk_registry_ndevices(const struct brk_registry *r)
{
	return r->ndevs;
}

uint32_t brk_registry_nvms(const struct brk_registry *r)
{
	return r->nvms;
}

bool brk_dev_state_allowed(enum brk_dev_state from, enum brk_dev_state to)
{
	return state_valid(from) && state_valid(to) && (allowed[from] & ST(to));
}

int brk_dev_set_state(struct brk_dev_rec *d, enum brk_dev_state to)
{
	if (!brk_dev_state_allowed(d->state, to)) {
		brk_warn("%s: state %s -> %s is not a transition of the device lifecycle", d->bdf,
			 brk_dev_state_name(d->state), brk_dev_state_name(to));
		return -EINVAL;
	}
	brk_debug("%s: state %s -> %s", d->bdf, brk_dev_state_name(d->state),
		  brk_dev_state_name(to));
	d->state = to;
	return 0;
}

const char *brk_dev_state_name(enum brk_dev_state s)
{
	return state_valid(s) ? state_names[s] : "invalid";
}

enum brk_dev_state brk_dev_state_wire(enum brk_dev_state s)
{
	return s > BRK_DEV_FAULTED ? BRK_DEV_FAULTED : s;
}

void brk_dev_set_fault(struct brk_dev_rec *d, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->last_fault, sizeof(d->last_fault), fmt, ap);
	va_end(ap);
}
