/*
 * record_state: the state record's model in memory (struct brk_rec_state): VMs and devices, each
 * found by name in O(log n) through a sorted index beside the put-order array the snapshot is
 * written from, a VM's mappings sorted by IOVA (dma_iova.c's search), and the intents pending.
 * Responsible for keeping indexes, arrays and counts in step and for the limits on each;
 * trusts record_apply.c to have checked every value before it is put here.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "record_priv.h"

struct brk_rec_state *rec_state_new(void)
{
	return calloc(1, sizeof(struct brk_rec_state));
}

static void vm_free(struct brk_rec_vm *vm)
{
	uint32_t i;

	if (!vm)
		return;
	for (i = 0; i < vm->nmaps; i++)
		free(vm->map[i].also);
	free(vm->map);
	free(vm);
}

static void dev_free(struct brk_rec_dev *d)
{
	uint32_t i;

	if (!d)
		return;
	for (i = 0; i < BRK_REC_MAX_IRQS; i++)
		free(d->irq[i]);
	free(d);
}

void brk_rec_state_free(struct brk_rec_state *st)
{
	uint32_t i;

	if (!st)
		return;
	for (i = 0; i < st->nvms; i++)
		vm_free(st->vms[i]);
	for (i = 0; i < st->ndevs; i++)
		dev_free(st->devs[i]);
	free(st->vms);
	free(st->devs);
	free(st->vm_index);
	free(st->dev_index);
	free(st->pending);
	free(st);
}

static void *memdup(const void *p, size_t n)
{
	void *q = malloc(n ? n : 1);

	if (q && n)
		memcpy(q, p, n);
	return q;
}

static struct brk_rec_vm *vm_copy(const struct brk_rec_vm *vm)
{
	struct brk_rec_vm *c = memdup(vm, sizeof(*vm));
	uint32_t i;

	if (!c)
		return NULL;
	c->map = memdup(vm->map, (size_t)vm->nmaps * sizeof(*vm->map));
	c->cap = vm->nmaps;
	if (!c->map) {
		free(c);
		return NULL;
	}
	/* Owner lists are few (a mapping two VMs' devices share): copied one by one, each NULL
	 * until it is, so that vm_free() frees only what is the copy's. */
	for (i = 0; i < c->nmaps; i++)
		c->map[i].also = NULL;
	for (i = 0; i < c->nmaps; i++) {
		if (!vm->map[i].nalso)
			continue;
		c->map[i].also = memdup(vm->map[i].also, vm->map[i].nalso * sizeof(uint64_t));
		if (!c->map[i].also) {
			vm_free(c);
			return NULL;
		}
	}
	return c;
}

static struct brk_rec_dev *dev_copy(const struct brk_rec_dev *d)
{
	struct brk_rec_dev *c = memdup(d, sizeof(*d));
	uint32_t i;

	if (!c)
		return NULL;
	for (i = 0; i < BRK_REC_MAX_IRQS; i++)
		c->irq[i] = NULL;
	for (i = 0; i < BRK_REC_MAX_IRQS; i++) {
		if (d->irq[i] && !(c->irq[i] = memdup(d->irq[i], sizeof(*d->irq[i])))) {
			dev_free(c);
			return NULL;
		}
	}
	return c;
}

struct brk_rec_state *rec_state_copy(const struct brk_rec_state *st)
{
	_cleanup_(brk_rec_state_freep) struct brk_rec_state *c = rec_state_new();

	if (!c)
		return NULL;
	c->starts = st->starts;
	c->epoch = st->epoch;
	c->next_id = st->next_id;
	c->vms = calloc(st->nvms ? st->nvms : 1, sizeof(*c->vms));
	c->devs = calloc(st->ndevs ? st->ndevs : 1, sizeof(*c->devs));
	c->pending = memdup(st->pending, (size_t)st->npending * sizeof(*st->pending));
	if (!c->vms || !c->devs || !c->pending)
		return NULL;
	c->npending = st->npending;
	for (; c->nvms < st->nvms; c->nvms++)
		if (!(c->vms[c->nvms] = vm_copy(st->vms[c->nvms])))
			return NULL;
	for (; c->ndevs < st->ndevs; c->ndevs++)
		if (!(c->devs[c->ndevs] = dev_copy(st->devs[c->ndevs])))
			return NULL;
	return TAKE_PTR(c);
}

/* The index of VMs or devices sorted by name, so that every journal entry finds its object in
 * O(log n) among thousands. Both structs start with their name (`name`, `bdf`): an entry's key
 * is the entry itself read as a string. *pos: where `key` is or would go. */
static void *idx_find(void *const *idx, uint32_t n, const char *key, uint32_t *pos)
{
	uint32_t lo = 0, hi = n, mid;
	int c;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		c = strcmp((const char *)idx[mid], key);
		if (c == 0) {
			*pos = mid;
			return idx[mid];
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return NULL;
}

static void idx_insert(void **idx, uint32_t n, uint32_t pos, void *obj)
{
	memmove(&idx[pos + 1], &idx[pos], (n - pos) * sizeof(*idx));
	idx[pos] = obj;
}

static void idx_remove(void **idx, uint32_t n, uint32_t pos)
{
	memmove(&idx[pos], &idx[pos + 1], (n - pos - 1) * sizeof(*idx));
}

/* Removes `obj` from the put-order array `arr` (n entries). */
static void arr_remove(void **arr, uint32_t n, const void *obj)
{
	uint32_t i;

	for (i = 0; arr[i] != obj; i++)
		;
	memmove(&arr[i], &arr[i + 1], (n - i - 1) * sizeof(*arr));
}

struct brk_rec_vm *rec_state_vm(const struct brk_rec_state *st, const char *name)
{
	uint32_t pos;

	_Static_assert(offsetof(struct brk_rec_vm, name) == 0, "the index reads the name");

	return idx_find(st->vm_index, st->nvms, name, &pos);
}

struct brk_rec_dev *rec_state_dev(const struct brk_rec_state *st, const char *bdf)
{
	uint32_t pos;

	_Static_assert(offsetof(struct brk_rec_dev, bdf) == 0, "the index reads the bdf");

	return idx_find(st->dev_index, st->ndevs, bdf, &pos);
}

const struct brk_rec_vm *brk_rec_state_vm(const struct brk_rec_state *st, const char *name)
{
	return rec_state_vm(st, name);
}

const struct brk_rec_dev *brk_rec_state_dev(const struct brk_rec_state *st, const char *bdf)
{
	return rec_state_dev(st, bdf);
}

struct brk_rec_pending *rec_state_pending(const struct brk_rec_state *st, uint64_t id)
{
	uint32_t i;

	for (i = 0; i < st->npending; i++) {
		if (st->pending[i].id == id)
			return &st->pending[i];
	}
	return NULL;
}

long rec_vm_find_map(const struct brk_rec_vm *vm, uint64_t iova, uint64_t size)
{
	return brk_dma_iova_find(vm->map, vm->nmaps, sizeof(*vm->map), iova, size);
}

int rec_vm_reserve(struct brk_rec_vm *vm)
{
	struct brk_dma_mapping *m;
	uint32_t cap;

	if (vm->nmaps < vm->cap)
		return 0;
	if (vm->nmaps >= BRK_REC_MAX_MAPS)
		return -ENOSPC;
	cap = vm->cap ? vm->cap * 2 : 64;
	m = realloc(vm->map, (size_t)cap * sizeof(*m));
	if (!m)
		return -ENOMEM;
	vm->map = m;
	vm->cap = cap;
	return 0;
}

/* Inserts `m` (owning m->also) in order; capacity must be reserved. -EEXIST on overlap. */
int rec_vm_insert(struct brk_rec_vm *vm, const struct brk_dma_mapping *m)
{
	uint32_t i;

	if (brk_dma_iova_overlap(vm->map, vm->nmaps, sizeof(*vm->map), m->iova,
				 m->iova + (m->size - 1), &i) >= 0)
		return -EEXIST;
	memmove(&vm->map[i + 1], &vm->map[i], (size_t)(vm->nmaps - i) * sizeof(*m));
	vm->map[i] = *m;
	vm->nmaps++;
	return 0;
}

void rec_vm_remove(struct brk_rec_vm *vm, uint32_t i)
{
	free(vm->map[i].also);
	memmove(&vm->map[i], &vm->map[i + 1], (size_t)(vm->nmaps - i - 1) * sizeof(vm->map[0]));
	vm->nmaps--;
}

static int grow_ptrs(void *pp, uint32_t n)
{
	void **p = realloc(*(void ***)pp, ((size_t)n + 1) * sizeof(void *));

	if (!p)
		return -ENOMEM;
	*(void ***)pp = p;
	return 0;
}

int rec_state_add_vm(struct brk_rec_state *st, const char *name, struct brk_rec_vm **ret)
{
	struct brk_rec_vm *vm;
	uint32_t pos;

	if (st->nvms >= BRK_REC_MAX_VMS)
		return -ENOSPC;
	vm = calloc(1, sizeof(*vm));
	if (!vm || grow_ptrs(&st->vms, st->nvms) < 0 || grow_ptrs(&st->vm_index, st->nvms) < 0) {
		free(vm);
		return -ENOMEM;
	}
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	idx_find(st->vm_index, st->nvms, vm->name, &pos);
	idx_insert(st->vm_index, st->nvms, pos, vm);
	st->vms[st->nvms++] = vm;
	*ret = vm;
	return 0;
}

void rec_state_del_vm(struct brk_rec_state *st, struct brk_rec_vm *vm)
{
	uint32_t i;

	idx_find(st->vm_index, st->nvms, vm->name, &i);
	idx_remove(st->vm_index, st->nvms, i);
	arr_remove((void **)st->vms, st->nvms, vm);
	st->nvms--;
	vm_free(vm);
}

int rec_state_add_dev(struct brk_rec_state *st, struct brk_rec_dev *d)
{
	uint32_t i;

	if (st->ndevs >= BRK_REC_MAX_DEVS)
		return -ENOSPC;
	if (grow_ptrs(&st->devs, st->ndevs) < 0 || grow_ptrs(&st->dev_index, st->ndevs) < 0)
		return -ENOMEM;
	idx_find(st->dev_index, st->ndevs, d->bdf, &i);
	idx_insert(st->dev_index, st->ndevs, i, d);
	st->devs[st->ndevs++] = d;
	return 0;
}

void rec_state_del_dev(struct brk_rec_state *st, struct brk_rec_dev *d)
{
	uint32_t i;

	idx_find(st->dev_index, st->ndevs, d->bdf, &i);
	idx_remove(st->dev_index, st->ndevs, i);
	arr_remove((void **)st->devs, st->ndevs, d);
	st->ndevs--;
	dev_free(d);
}
