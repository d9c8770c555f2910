/*
 * record_env: the state record tests' shared helpers (record_env.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "crc32c.h"
#include "le.h"
#include "record.h"
#include "record_priv.h"
#include "record_env.h"

/* Everything a state holds, as text, so two states compare with one strcmp. */
char *dump(const struct brk_rec_state *st)
{
	char *out = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&out, &len);
	uint32_t i, k, a;

	assert_non_null(f);
	fprintf(f, "starts %llu epoch %llu next %llu\n", (unsigned long long)st->starts,
		(unsigned long long)st->epoch, (unsigned long long)st->next_id);
	for (i = 0; i < st->nvms; i++) {
		const struct brk_rec_vm *vm = st->vms[i];

		fprintf(f, "vm %s %u %llu %u %u %u | %llu %llu %llu\n", vm->name, vm->max_mappings,
			(unsigned long long)vm->max_pinned_bytes, vm->owner_uid, vm->owner_gid,
			vm->dma_flags, (unsigned long long)vm->maps, (unsigned long long)vm->unmaps,
			(unsigned long long)vm->shares);
		for (k = 0; k < vm->nmaps; k++) {
			const struct brk_dma_mapping *m = &vm->map[k];

			fprintf(f, " map %llx %llx %llx %u %llu %llu %llu:",
				(unsigned long long)m->iova, (unsigned long long)m->size,
				(unsigned long long)m->offset, m->prot, (unsigned long long)m->dev,
				(unsigned long long)m->ino, (unsigned long long)m->owner);
			for (a = 0; a < m->nalso; a++)
				fprintf(f, " %llu", (unsigned long long)m->also[a]);
			fputc('\n', f);
		}
	}
	for (i = 0; i < st->ndevs; i++) {
		const struct brk_rec_dev *d = st->devs[i];

		fprintf(f, "dev %s %s %u %llu %u %u %d %u %u [%s] [%s] %u %u %u %u %u %u [%s]\n",
			d->bdf, d->vm, d->state, (unsigned long long)d->id, d->owner_uid,
			d->owner_gid, d->allow_mmap, d->protocols, d->iommu_group, d->socket_path,
			d->vfu_socket_path, d->generation, d->restarts, d->worker_pid,
			d->worker_uid, d->worker_gid, d->resets_before, d->last_fault);
		for (k = 0; k < BRK_REC_MAX_IRQS; k++) {
			const struct brk_rec_irq *x = d->irq[k];

			if (!x || !x->count)
				continue;
			fprintf(f, " irq %u %u %u %u %d:", k, x->count, x->enabled, x->triggers,
				x->unmask_fd);
			for (a = 0; a < x->count; a++)
				fputc('0' + x->trig[a], f);
			fputc('\n', f);
		}
	}
	for (i = 0; i < st->npending; i++) {
		const struct brk_rec_pending *p = &st->pending[i];

		fprintf(f, "pending %llu %d %s %llu %llx %llx %llx %u %u\n",
			(unsigned long long)p->id, p->kind, p->key, (unsigned long long)p->owner,
			(unsigned long long)p->iova, (unsigned long long)p->size,
			(unsigned long long)p->offset, p->prot, p->index);
	}
	fclose(f);
	return out;
}

/* The memfd's bytes. */
uint8_t *file_bytes(int fd, size_t *len)
{
	struct stat s;
	uint8_t *b;

	assert_int_equal(fstat(fd, &s), 0);
	b = malloc((size_t)s.st_size);
	assert_non_null(b);
	assert_int_equal(pread(fd, b, (size_t)s.st_size, 0), s.st_size);
	*len = (size_t)s.st_size;
	return b;
}

/* Parses `b` and returns its dump, failing the test with the loader's message on error. */
char *parse_dump(const uint8_t *b, size_t len)
{
	struct brk_rec_state *st = NULL;
	struct vb_err err = {0};
	char *d;
	int r = brk_record_parse(b, len, &st, &err);

	if (r != 0)
		fail_msg("parse: %d %s", r, err.msg);
	d = dump(st);
	brk_rec_state_free(st);
	return d;
}

char *fd_dump(int fd)
{
	size_t len;
	uint8_t *b = file_bytes(fd, &len);
	char *d = parse_dump(b, len);

	free(b);
	return d;
}

void assert_same(const char *a, const char *b)
{
	if (strcmp(a, b))
		fail_msg("states differ:\n--- want\n%s--- got\n%s", a, b);
}

struct brk_rec_vm vm_of(const char *name, uint32_t maxmaps)
{
	struct brk_rec_vm vm = {.max_mappings = maxmaps,
				.max_pinned_bytes = 1ull << 30,
				.owner_uid = 1000,
				.owner_gid = 1001,
				.dma_flags = 1};

	snprintf(vm.name, sizeof(vm.name), "%s", name);
	return vm;
}

struct brk_rec_dev dev_of(const char *bdf, const char *vm, uint32_t state)
{
	struct brk_rec_dev d = {.state = state,
				.id = 7,
				.owner_uid = 1000,
				.owner_gid = 1001,
				.allow_mmap = true,
				.protocols = 3,
				.iommu_group = 12,
				.generation = 2,
				.restarts = 1,
				.worker_pid = 4242,
				.worker_uid = 60000,
				.worker_gid = 60001,
				.resets_before = 3};

	snprintf(d.bdf, sizeof(d.bdf), "%s", bdf);
	snprintf(d.vm, sizeof(d.vm), "%s", vm);
	snprintf(d.socket_path, sizeof(d.socket_path), "/run/vfio-broker/%s/%s.sock", vm, bdf);
	snprintf(d.last_fault, sizeof(d.last_fault), "worker crashed: signal 9");
	return d;
}

struct brk_record *rec_new(void)
{
	struct brk_record *rec = NULL;
	struct vb_err err = {0};
	int r = brk_record_new(&rec, &err);

	if (r != 0)
		fail_msg("brk_record_new: %d %s", r, err.msg);
	return rec;
}

/* One DMA map through the journal, as dma.c does it around its ioctl. */
void jmap(const struct brk_journal *j, uint64_t owner, uint64_t iova, uint64_t size, bool ok)
{
	struct brk_jop op = {.kind = BRK_JOP_DMA_MAP,
			     .owner = owner,
			     .iova = iova,
			     .size = size,
			     .offset = iova,
			     .prot = 3,
			     .dev = 5,
			     .ino = 77};

	assert_int_equal(j->intent(j, &op), 0);
	j->done(j, &op, ok);
}

void jop(const struct brk_journal *j, enum brk_jop_kind kind, uint64_t owner, uint64_t iova,
	 uint64_t size)
{
	struct brk_jop op = {.kind = kind, .owner = owner, .iova = iova, .size = size};

	assert_int_equal(j->intent(j, &op), 0);
	j->done(j, &op, true);
}

void jirq(const struct brk_journal *j, uint32_t index, uint32_t count, uint32_t enabled)
{
	uint8_t trig[64] = {0};
	struct brk_jop op = {.kind = BRK_JOP_IRQ_SET, .index = index};
	uint32_t i;

	for (i = 0; i < enabled; i += 2)
		trig[i] = 1;
	assert_int_equal(j->intent(j, &op), 0);
	op.irq_count = count;
	op.irq_enabled = enabled;
	op.irq_trig = trig;
	j->done(j, &op, true);
}

/* A record with some of everything. */
struct brk_record *rec_populated(void)
{
	struct brk_record *rec = rec_new();
	struct brk_rec_vm vm = vm_of("vm-a", 100);
	struct brk_rec_dev d = dev_of("0000:00:03.0", "vm-a", 3);
	struct brk_journal jd, ji;

	assert_int_equal(brk_record_set_broker(rec, 3, 0xabcdef), 0);
	assert_int_equal(brk_record_vm_put(rec, &vm), 0);
	vm = vm_of("vm-b", 5);
	assert_int_equal(brk_record_vm_put(rec, &vm), 0);
	assert_int_equal(brk_record_dev_put(rec, &d), 0);
	assert_int_equal(brk_record_dma_journal(rec, "vm-a", &jd), 0);
	assert_int_equal(brk_record_irq_journal(rec, "0000:00:03.0", &ji), 0);
	jmap(&jd, 7, 0x100000, 0x4000, true);
	jmap(&jd, 7, 0x200000, 0x1000, true);
	jmap(&jd, 7, 0x300000, 0x1000, false);
	jop(&jd, BRK_JOP_DMA_SHARE, 8, 0x100000, 0x4000);
	jirq(&ji, 2, 33, 5);
	return rec;
}
