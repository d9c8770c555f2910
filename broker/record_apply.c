/*
 * record_apply: what each entry of the state record does to its model (struct brk_rec_state,
 * record_state.c), with its checks. The same code replays a loaded record (snapshot, then
 * journal) and keeps the live copy: record.c encodes a change, applies it here, then writes the
 * same bytes, so the file and the memory cannot drift apart.
 *
 * Trusts nothing in an entry: a record may be damaged or stale. Every count, length and string
 * is bounded; an entry either applies completely or leaves the state as it was.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "le.h"
#include "record_priv.h"
#include "registry.h"
#include "sort.h"

/* ---- reading ------------------------------------------------------------------------------ */

struct rec_rd {
	const uint8_t *p;
	size_t len, off;
	bool bad;
};

static const uint8_t *rec_take(struct rec_rd *r, size_t n)
{
	if (r->bad || n > r->len - r->off) {
		r->bad = true;
		return NULL;
	}
	r->off += n;
	return r->p + r->off - n;
}

static uint8_t get_u8(struct rec_rd *r)
{
	const uint8_t *p = rec_take(r, 1);

	return p ? p[0] : 0;
}

static uint32_t get_u32(struct rec_rd *r)
{
	const uint8_t *p = rec_take(r, 4);

	return p ? vb_le32_get(p) : 0;
}

static uint64_t get_u64(struct rec_rd *r)
{
	const uint8_t *p = rec_take(r, 8);

	return p ? vb_le64_get(p) : 0;
}

/* A string of min..max bytes, no NUL; printable ASCII when `ascii`. */
static void get_str(struct rec_rd *r, char *out, size_t min, size_t max, bool ascii)
{
	const uint8_t *l = rec_take(r, 2), *p;
	size_t n = l ? vb_le16_get(l) : 0, i;

	out[0] = 0;
	if (!l || n < min || n > max || !(p = rec_take(r, n))) {
		r->bad = true;
		return;
	}
	for (i = 0; i < n; i++) {
		if (!p[i] || (ascii && (p[i] < 0x20 || p[i] > 0x7e))) {
			r->bad = true;
			return;
		}
	}
	memcpy(out, p, n);
	out[n] = 0;
}

int brk_rec_state_resolve(struct brk_rec_state *st, uint64_t id)
{
	uint8_t p[8];

	vb_le64_put(p, id);
	if (!rec_state_pending(st, id))
		return -ENOENT;
	return rec_apply(st, REC_RESOLVE, false, p, sizeof(p), NULL);
}

/* ---- applying entries --------------------------------------------------------------------- */

#define BAD(...) vb_errf(err, -EBADMSG, __VA_ARGS__)

static int apply_broker(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	uint64_t starts = get_u64(r), epoch = get_u64(r), next = get_u64(r);

	if (r->bad)
		return BAD("truncated");
	st->starts = starts;
	st->epoch = epoch;
	if (next > st->next_id)
		st->next_id = next;
	return 0;
}

static int apply_vm_put(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_vm v = {0}, *vm;
	int rc;

	get_str(r, v.name, 1, BRK_REC_NAME_MAX, true);
	v.max_mappings = get_u32(r);
	v.max_pinned_bytes = get_u64(r);
	v.owner_uid = get_u32(r);
	v.owner_gid = get_u32(r);
	v.dma_flags = get_u32(r);
	if (r->bad)
		return BAD("truncated, or a VM name that is empty, longer than %d or not printable",
			   BRK_REC_NAME_MAX);
	vm = rec_state_vm(st, v.name);
	if (!vm && (rc = rec_state_add_vm(st, v.name, &vm)) < 0)
		return rc == -ENOSPC ? BAD("more than %d VMs", BRK_REC_MAX_VMS)
				     : vb_errf(err, rc, "out of memory");
	vm->max_mappings = v.max_mappings;
	vm->max_pinned_bytes = v.max_pinned_bytes;
	vm->owner_uid = v.owner_uid;
	vm->owner_gid = v.owner_gid;
	vm->dma_flags = v.dma_flags;
	return 0;
}

static struct brk_rec_vm *get_vm(struct brk_rec_state *st, struct rec_rd *r)
{
	char name[BRK_REC_NAME_MAX + 1];

	get_str(r, name, 1, BRK_REC_NAME_MAX, true);
	return r->bad ? NULL : rec_state_vm(st, name);
}

static struct brk_rec_dev *get_dev(struct brk_rec_state *st, struct rec_rd *r)
{
	char bdf[BRK_REC_BDF_MAX + 1];

	get_str(r, bdf, 1, BRK_REC_BDF_MAX, true);
	return r->bad ? NULL : rec_state_dev(st, bdf);
}

/* The pending intents on a VM's table (irq false) or a device's interrupts (irq true) go with
 * it: what they were about went with the container or device fd (restart.md: an object leaves
 * the record once released), and an intent naming nothing would make the next snapshot refuse
 * to load. */
static void drop_pending_of(struct brk_rec_state *st, bool irq, const char *key)
{
	uint32_t i = 0;

	while (i < st->npending) {
		if ((st->pending[i].kind == BRK_JOP_IRQ_SET) == irq &&
		    !strcmp(st->pending[i].key, key))
			st->pending[i] = st->pending[--st->npending];
		else
			i++;
	}
}

static int apply_vm_del(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_vm *vm = get_vm(st, r);
	uint32_t i;

	if (!vm)
		return BAD("VM deletion of an unknown VM");
	for (i = 0; i < st->ndevs; i++) {
		if (!strcmp(st->devs[i]->vm, vm->name))
			return BAD("VM %s deleted while device %s names it", vm->name,
				   st->devs[i]->bdf);
	}
	drop_pending_of(st, false, vm->name);
	rec_state_del_vm(st, vm);
	return 0;
}

static int apply_vm_stats(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_vm *vm = get_vm(st, r);
	uint64_t maps = get_u64(r), unmaps = get_u64(r), shares = get_u64(r);

	if (r->bad || !vm)
		return BAD("counters of an unknown VM, or truncated");
	vm->maps = maps;
	vm->unmaps = unmaps;
	vm->shares = shares;
	return 0;
}

static void get_dev_fields(struct rec_rd *r, struct brk_rec_dev *d)
{
	uint8_t allow;

	get_str(r, d->bdf, 1, BRK_REC_BDF_MAX, true);
	get_str(r, d->vm, 1, BRK_REC_NAME_MAX, true);
	d->state = get_u32(r);
	d->id = get_u64(r);
	d->owner_uid = get_u32(r);
	d->owner_gid = get_u32(r);
	allow = get_u8(r);
	d->allow_mmap = allow == 1;
	r->bad |= allow > 1;
	d->protocols = get_u32(r);
	d->iommu_group = get_u32(r);
	get_str(r, d->socket_path, 0, BRK_REC_PATH_MAX - 1, true);
	get_str(r, d->vfu_socket_path, 0, BRK_REC_PATH_MAX - 1, true);
	d->generation = get_u32(r);
	d->restarts = get_u32(r);
	d->worker_pid = get_u32(r);
	d->worker_uid = get_u32(r);
	d->worker_gid = get_u32(r);
	d->resets_before = get_u32(r);
	get_str(r, d->last_fault, 0, BRK_REC_FAULT_MAX - 1, false);
}

static int apply_dev_put(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_dev *d = calloc(1, sizeof(*d)), *old;
	uint32_t i;
	int rc;

	if (!d)
		return vb_errf(err, -ENOMEM, "out of memory");
	get_dev_fields(r, d);
	if (r->bad || d->state < 1 || d->state > BRK_DEV_STATE_LAST ||
	    d->worker_pid > (uint32_t)INT32_MAX) {
		free(d);
		return BAD("truncated, or a string, state or pid out of bounds");
	}
	if (!rec_state_vm(st, d->vm)) {
		free(d);
		return BAD("device names an unknown VM");
	}
	old = rec_state_dev(st, d->bdf);
	if (old) {
		memcpy(d->irq, old->irq, sizeof(d->irq));
		*old = *d;
		free(d);
		return 0;
	}
	for (i = 0; i < BRK_REC_MAX_IRQS; i++)
		d->irq[i] = NULL;
	rc = rec_state_add_dev(st, d);
	if (rc < 0) {
		free(d);
		return rc == -ENOSPC ? BAD("more than %d devices", BRK_REC_MAX_DEVS)
				     : vb_errf(err, rc, "out of memory");
	}
	return 0;
}

static int apply_dev_del(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_dev *d = get_dev(st, r);

	if (!d)
		return BAD("deletion of an unknown device");
	drop_pending_of(st, true, d->bdf);
	rec_state_del_dev(st, d);
	return 0;
}

static bool range_ok(uint64_t iova, uint64_t size, uint64_t offset)
{
	return size && iova + (size - 1) >= iova && offset + (size - 1) >= offset;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* 1: every owner once; 0: one twice; 2: out of memory. Sorted, so a mapping of 4096 owners
 * costs thousands of comparisons, not millions. */
static uint32_t owners_distinct(const struct brk_dma_mapping *m)
{
	uint64_t *o = malloc((m->nalso + 1) * sizeof(*o));
	uint32_t i, ok = 1;

	if (!o)
		return 2;
	o[0] = m->owner;
	if (m->nalso)
		memcpy(o + 1, m->also, m->nalso * sizeof(*o));
	vb_sort(o, m->nalso + 1, sizeof(*o), cmp_u64);
	for (i = 0; i < m->nalso && ok; i++)
		ok = o[i] != o[i + 1];
	free(o);
	return ok;
}

static int apply_map(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_vm *vm = get_vm(st, r);
	struct brk_dma_mapping m = {0};
	uint32_t i, n;

	m.iova = get_u64(r);
	m.size = get_u64(r);
	m.offset = get_u64(r);
	m.prot = get_u32(r);
	m.dev = get_u64(r);
	m.ino = get_u64(r);
	m.owner = get_u64(r);
	n = get_u32(r);
	if (r->bad || !vm || !range_ok(m.iova, m.size, m.offset) || !m.prot ||
	    (m.prot & ~BRK_DMA_PROT_MASK) || n >= BRK_REC_MAX_OWNERS ||
	    (size_t)n * 8 > r->len - r->off)
		return BAD("mapping of an unknown VM, or with a range, prot or owner count out of "
			   "bounds");
	if (n && !(m.also = calloc(n, sizeof(*m.also))))
		return vb_errf(err, -ENOMEM, "out of memory");
	for (i = 0; i < n; i++)
		m.also[m.nalso++] = get_u64(r);
	i = owners_distinct(&m);
	if (i != 1) {
		free(m.also);
		return i ? vb_errf(err, -ENOMEM, "out of memory")
			 : BAD("mapping at 0x%llx lists an owner twice",
			       (unsigned long long)m.iova);
	}
	if (rec_vm_reserve(vm) < 0 || rec_vm_insert(vm, &m) < 0) {
		free(m.also);
		return BAD("mapping 0x%llx+0x%llx of VM %s overlaps another, or too many",
			   (unsigned long long)m.iova, (unsigned long long)m.size, vm->name);
	}
	return 0;
}

static int get_irq_state(struct rec_rd *r, struct brk_rec_irq *x, struct vb_err *err)
{
	const uint8_t *bits;
	uint8_t unmask;
	uint32_t i;

	x->count = get_u32(r);
	x->enabled = get_u32(r);
	unmask = get_u8(r);
	x->unmask_fd = unmask == 1;
	if (r->bad || unmask > 1 || x->count == 0 || x->count > BRK_REC_MAX_VECTORS ||
	    x->enabled > x->count)
		return BAD("IRQ state with a vector count out of bounds");
	bits = rec_take(r, (x->count + 7) / 8);
	if (!bits)
		return BAD("truncated IRQ state");
	x->triggers = 0;
	for (i = 0; i < BRK_REC_MAX_VECTORS; i++) {
		x->trig[i] = i < x->count ? (bits[i / 8] >> (i % 8)) & 1 : 0;
		x->triggers += x->trig[i];
	}
	if ((x->count % 8) && (bits[x->count / 8] >> (x->count % 8)))
		return BAD("IRQ trigger bits beyond the vector count");
	return 0;
}

static int apply_irq(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_dev *d = get_dev(st, r);
	uint32_t index = get_u32(r);
	struct brk_rec_irq x;
	int ret;

	if (r->bad || !d || index >= BRK_REC_MAX_IRQS)
		return BAD("IRQ state of an unknown device or index");
	ret = get_irq_state(r, &x, err);
	if (ret < 0)
		return ret;
	if (!d->irq[index] && !(d->irq[index] = malloc(sizeof(x))))
		return vb_errf(err, -ENOMEM, "out of memory");
	*d->irq[index] = x;
	return 0;
}

static int apply_intent(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_pending p = {0}, *n;
	bool irq;

	p.id = get_u64(r);
	p.kind = get_u8(r);
	irq = p.kind == BRK_JOP_IRQ_SET;
	get_str(r, p.key, 1, irq ? BRK_REC_BDF_MAX : BRK_REC_NAME_MAX, true);
	if (irq) {
		p.index = get_u32(r);
	} else {
		p.owner = get_u64(r);
		p.iova = get_u64(r);
		p.size = get_u64(r);
		p.offset = get_u64(r);
		p.prot = get_u32(r);
		p.dev = get_u64(r);
		p.ino = get_u64(r);
	}
	if (r->bad || (p.kind != BRK_JOP_DMA_MAP && p.kind != BRK_JOP_DMA_UNMAP && !irq) ||
	    (irq ? p.index >= BRK_REC_MAX_IRQS || !rec_state_dev(st, p.key)
		 : !range_ok(p.iova, p.size, p.offset) || !rec_state_vm(st, p.key)))
		return BAD("intent of an unknown kind, VM, device or index, or truncated");
	if (rec_state_pending(st, p.id) || st->npending >= BRK_REC_MAX_PENDING)
		return BAD("intent %llu is pending twice, or too many pending",
			   (unsigned long long)p.id);
	n = realloc(st->pending, (st->npending + 1) * sizeof(*n));
	if (!n)
		return vb_errf(err, -ENOMEM, "out of memory");
	st->pending = n;
	st->pending[st->npending++] = p;
	if (p.id >= st->next_id)
		st->next_id = p.id + 1;
	return 0;
}

static void drop_pending(struct brk_rec_state *st, struct brk_rec_pending *p)
{
	*p = st->pending[--st->npending];
}

/* The kernel call of pending intent `p` happened (commit) or was redone (resolve). */
static int dma_done(struct brk_rec_state *st, const struct brk_rec_pending *p, struct vb_err *err)
{
	struct brk_rec_vm *vm = rec_state_vm(st, p->key);
	struct brk_dma_mapping m = {.iova = p->iova,
				    .size = p->size,
				    .offset = p->offset,
				    .prot = p->prot,
				    .dev = p->dev,
				    .ino = p->ino,
				    .owner = p->owner};
	long i;

	if (!vm)
		return BAD("commit for VM %s, which is gone", p->key);
	if (p->kind == BRK_JOP_DMA_MAP) {
		if (!p->prot || (p->prot & ~BRK_DMA_PROT_MASK) || rec_vm_reserve(vm) < 0 ||
		    rec_vm_insert(vm, &m) < 0)
			return BAD("committed map 0x%llx+0x%llx overlaps, or bad prot or too many",
				   (unsigned long long)p->iova, (unsigned long long)p->size);
		vm->maps++;
		return 0;
	}
	/* Owners it still had go with it: brk_dma_unmap_all() unmaps shared mappings whole. A
	 * mapping already absent stays absent: what the kernel holds is the same either way (an
	 * adopter that rebuilt its table from a copy taken before resolving an unmap unmaps it
	 * again, and the kernel answers that with success). */
	i = rec_vm_find_map(vm, p->iova, p->size);
	if (i >= 0)
		rec_vm_remove(vm, (uint32_t)i);
	vm->unmaps++;
	return 0;
}

static int apply_commit(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_pending *p = rec_state_pending(st, get_u64(r));
	struct brk_rec_irq x;
	struct brk_rec_dev *d;
	int ret;

	if (r->bad || !p)
		return BAD("commit of no pending intent");
	if (p->kind != BRK_JOP_IRQ_SET) {
		ret = dma_done(st, p, err);
		if (ret == 0)
			drop_pending(st, p);
		return ret;
	}
	ret = get_irq_state(r, &x, err);
	if (ret < 0)
		return ret;
	d = rec_state_dev(st, p->key);
	if (!d)
		return BAD("IRQ commit for device %s, which is gone", p->key);
	if (!d->irq[p->index] && !(d->irq[p->index] = malloc(sizeof(x))))
		return vb_errf(err, -ENOMEM, "out of memory");
	*d->irq[p->index] = x;
	drop_pending(st, p);
	return 0;
}

static int apply_abort(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_pending *p = rec_state_pending(st, get_u64(r));

	if (r->bad || !p)
		return BAD("abort of no pending intent");
	drop_pending(st, p);
	return 0;
}

static int apply_resolve(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_pending *p = rec_state_pending(st, get_u64(r));
	struct brk_rec_dev *d;
	int ret = 0;

	if (r->bad || !p)
		return BAD("resolution of no pending intent");
	/* An unmap redone leaves the mapping absent; its VM is there (deleting a VM drops its
	 * intents), so this cannot fail and a resolution always takes the intent away. */
	if (p->kind == BRK_JOP_DMA_UNMAP && rec_state_vm(st, p->key)) {
		ret = dma_done(st, p, err);
	} else if (p->kind == BRK_JOP_IRQ_SET && (d = rec_state_dev(st, p->key)) &&
		   d->irq[p->index]) {
		d->irq[p->index]->enabled = 0;
		d->irq[p->index]->triggers = 0;
		d->irq[p->index]->unmask_fd = false;
		memset(d->irq[p->index]->trig, 0, sizeof(d->irq[p->index]->trig));
	}
	if (ret == 0)
		drop_pending(st, p);
	return ret;
}

static int apply_owner(struct brk_rec_state *st, struct rec_rd *r, bool join, struct vb_err *err)
{
	struct brk_rec_vm *vm = get_vm(st, r);
	uint64_t iova = get_u64(r), size = get_u64(r), owner = get_u64(r);
	struct brk_dma_mapping *m;
	uint64_t *also;
	long i;
	uint32_t k;

	if (r->bad || !vm || (i = rec_vm_find_map(vm, iova, size)) < 0)
		return BAD("owner change of an unknown VM or mapping");
	m = &vm->map[i];
	if (join) {
		if (brk_dma_owned_by(m->owner, m->also, m->nalso, owner) ||
		    m->nalso + 1 >= BRK_REC_MAX_OWNERS)
			return BAD("owner %llu joins a mapping it holds, or too many owners",
				   (unsigned long long)owner);
		also = realloc(m->also, (m->nalso + 1) * sizeof(*also));
		if (!also)
			return vb_errf(err, -ENOMEM, "out of memory");
		m->also = also;
		m->also[m->nalso++] = owner;
		vm->shares++;
		return 0;
	}
	if (!m->nalso || !brk_dma_owned_by(m->owner, m->also, m->nalso, owner))
		return BAD("owner %llu leaves a mapping it does not share",
			   (unsigned long long)owner);
	for (k = 0; k < m->nalso && m->also[k] != owner; k++)
		;
	if (k == m->nalso)
		m->owner = m->also[--m->nalso];
	else
		m->also[k] = m->also[--m->nalso];
	return 0;
}

static int apply_share(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	return apply_owner(st, r, true, err);
}

static int apply_unshare(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	return apply_owner(st, r, false, err);
}

static int apply_forget(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err)
{
	struct brk_rec_vm *vm = get_vm(st, r);
	uint32_t i;

	if (!vm)
		return BAD("forget of an unknown VM");
	for (i = 0; i < vm->nmaps; i++)
		free(vm->map[i].also);
	vm->unmaps += vm->nmaps;
	vm->nmaps = 0;
	return 0;
}

#define SNAP (1u << 0) /* may appear in a snapshot */
#define JRN  (1u << 1) /* may appear in the journal */

static const struct {
	const char *name;
	unsigned where;
	int (*apply)(struct brk_rec_state *st, struct rec_rd *r, struct vb_err *err);
} rec_types[REC_TYPE_LAST + 1] = {
    [REC_BROKER] = {"broker", SNAP | JRN, apply_broker},
    [REC_VM_PUT] = {"vm", SNAP | JRN, apply_vm_put},
    [REC_VM_DEL] = {"vm-del", JRN, apply_vm_del},
    [REC_VM_STATS] = {"vm-stats", SNAP, apply_vm_stats},
    [REC_DEV_PUT] = {"device", SNAP | JRN, apply_dev_put},
    [REC_DEV_DEL] = {"device-del", JRN, apply_dev_del},
    [REC_MAP] = {"mapping", SNAP, apply_map},
    [REC_IRQ] = {"irq", SNAP, apply_irq},
    [REC_INTENT] = {"intent", SNAP | JRN, apply_intent},
    [REC_COMMIT] = {"commit", JRN, apply_commit},
    [REC_ABORT] = {"abort", JRN, apply_abort},
    [REC_SHARE] = {"share", JRN, apply_share},
    [REC_UNSHARE] = {"unshare", JRN, apply_unshare},
    [REC_FORGET] = {"forget", JRN, apply_forget},
    [REC_RESOLVE] = {"resolve", JRN, apply_resolve},
};

const char *rec_type_name(unsigned type)
{
	return type <= REC_TYPE_LAST && rec_types[type].name ? rec_types[type].name : "unknown";
}

int rec_apply(struct brk_rec_state *st, unsigned type, bool in_snapshot, const uint8_t *p,
	      size_t len, struct vb_err *err)
{
	struct rec_rd r = {.p = p, .len = len};
	int ret;

	if (type > REC_TYPE_LAST || !rec_types[type].apply)
		return BAD("entry type %u unknown", type);
	if (!(rec_types[type].where & (in_snapshot ? SNAP : JRN)))
		return BAD("a %s entry cannot be in the %s", rec_types[type].name,
			   in_snapshot ? "snapshot" : "journal");
	ret = rec_types[type].apply(st, &r, err);
	if (ret == 0 && r.off != r.len)
		return BAD("%zu bytes after a %s entry", r.len - r.off, rec_types[type].name);
	return ret;
}
