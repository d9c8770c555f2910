/*
 * record_env: what test_record.c and test_record_kill.c share: a state dumped as text (to
 * compare two states), a record file's bytes and their parse, records made and populated, the
 * journal's hooks driven as the DMA table and the interrupt state would.
 */
#ifndef VB_TESTS_RECORD_ENV_H
#define VB_TESTS_RECORD_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "journal.h"
#include "record.h"

/* A state as text, one line per object, so that two states compare as strings (dump); the
 * same of a record's bytes parsed, or of a record file (NULL when it does not load); a file's
 * bytes; two dumps that must be equal. */
char *dump(const struct brk_rec_state *st);
uint8_t *file_bytes(int fd, size_t *len);
char *parse_dump(const uint8_t *b, size_t len);
char *fd_dump(int fd);
void assert_same(const char *a, const char *b);
/* A VM and a device as the daemon records them. */
struct brk_rec_vm vm_of(const char *name, uint32_t maxmaps);
struct brk_rec_dev dev_of(const char *bdf, const char *vm, uint32_t state);
/* A new record; one with VMs, devices, mappings and interrupt state in it. */
struct brk_record *rec_new(void);
struct brk_record *rec_populated(void);
/* The journal hooks driven as the DMA table (a map's intent and its outcome; any operation)
 * and the interrupt state would. */
void jmap(const struct brk_journal *j, uint64_t owner, uint64_t iova, uint64_t size, bool ok);
void jop(const struct brk_journal *j, enum brk_jop_kind kind, uint64_t owner, uint64_t iova,
	 uint64_t size);
void jirq(const struct brk_journal *j, uint32_t index, uint32_t count, uint32_t enabled);

#endif
