/*
 * config: reads vfio-brokerd's INI file with libinih and turns it into a checked struct
 * brk_config. Responsible for: every key being known, every value parsed completely and
 * range-checked, paths being absolute and short enough for a unix socket address, and the first
 * problem being reported as "FILE:LINE: reason". Trusts nothing in the file; trusts libinih only
 * to split lines into section, key and value (line numbers are counted here, in the reader).
 * The values that are more than a path, a number or a yes/no are config_value.c's.
 */
#include "base.h"
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config_priv.h"
#include "log.h"

/* sun_path is 108 bytes; the runtime dir leaves room for "/" + a 32-byte socket name. */
#define CFG_SOCK_PATH_MAX   107
#define CFG_RUNTIME_DIR_MAX 72

enum cfg_type {
	CFG_PATH,    /* absolute path, char * */
	CFG_U32,     /* decimal, uint32_t within [min, max] */
	CFG_SIZE,    /* bytes with an optional K/M/G/T suffix (powers of 1024), uint64_t */
	CFG_U64,     /* decimal, uint64_t within [min, max] */
	CFG_BOOL,    /* yes/no/true/false/on/off/1/0 */
	CFG_SPECIAL, /* parsed by its own function */
};

struct cfg_state;
typedef int (*cfg_special_fn)(struct cfg_state *st, const char *value);

struct cfg_key {
	const char *section;
	const char *name;
	enum cfg_type type;
	size_t offset;
	uint64_t min, max;
	cfg_special_fn fn;
	size_t max_len; /* CFG_PATH */
	bool repeatable;
};

int brk_config__fail(struct cfg_state *st, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (st->failed)
		return 0;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vb_errf(st->err, -EINVAL, "%s:%u: %s", st->c->path, st->line, msg);
	st->failed = true;
	st->error = -EINVAL;
	return 0;
}

#define OFF(f) offsetof(struct brk_config, f)
#define MIB    (1ull << 20)
#define GIB    (1ull << 30)

static const struct cfg_key cfg_keys[] = {
    {.section = "broker",
     .name = "control_socket",
     .type = CFG_PATH,
     .max_len = CFG_SOCK_PATH_MAX,
     .offset = OFF(control_socket)},
    {.section = "broker", .name = "admin_uid", .type = CFG_SPECIAL, .fn = brk_config__admin_uid},
    {.section = "broker", .name = "admin_gid", .type = CFG_SPECIAL, .fn = brk_config__admin_gid},
    {.section = "broker",
     .name = "runtime_dir",
     .type = CFG_PATH,
     .max_len = CFG_RUNTIME_DIR_MAX,
     .offset = OFF(runtime_dir)},
    {.section = "broker", .name = "log_level", .type = CFG_SPECIAL, .fn = brk_config__log_level},
    {.section = "broker", .name = "seccomp", .type = CFG_SPECIAL, .fn = brk_config__broker_seccomp},
    {.section = "devices",
     .name = "allow",
     .type = CFG_SPECIAL,
     .fn = brk_config__allow,
     .repeatable = true},
    {.section = "devices", .name = "allow_bind", .type = CFG_BOOL, .offset = OFF(allow_bind)},
    {.section = "devices", .name = "protocol", .type = CFG_SPECIAL, .fn = brk_config__protocol},
    {.section = "limits",
     .name = "max_dma_mappings",
     .type = CFG_U32,
     .offset = OFF(max_dma_mappings),
     .min = 1,
     .max = BRK_DMA_MAPPINGS_MAX},
    /* 2^52: the largest physical address space x86-64 defines. */
    {.section = "limits",
     .name = "max_pinned_bytes",
     .type = CFG_SIZE,
     .offset = OFF(max_pinned_bytes),
     .min = 1 * MIB,
     .max = 1ull << 52},
    {.section = "limits",
     .name = "max_vms",
     .type = CFG_U32,
     .offset = OFF(max_vms),
     .min = 1,
     .max = 4096},
    {.section = "limits",
     .name = "max_devices",
     .type = CFG_U32,
     .offset = OFF(max_devices),
     .min = 1,
     .max = 4096},
    {.section = "limits",
     .name = "remove_timeout_ms",
     .type = CFG_U32,
     .offset = OFF(remove_timeout_ms),
     .min = 0,
     .max = 600000},
    {.section = "worker",
     .name = "path",
     .type = CFG_PATH,
     .max_len = PATH_MAX - 1,
     .offset = OFF(worker_path)},
    {.section = "worker", .name = "user", .type = CFG_SPECIAL, .fn = brk_config__worker_user},
    {.section = "worker", .name = "uid_range", .type = CFG_SPECIAL, .fn = brk_config__uid_range},
    {.section = "worker",
     .name = "rlimit_nofile",
     .type = CFG_U64,
     .offset = OFF(rlimits.nofile),
     .min = 8,
     .max = 65536},
    {.section = "worker",
     .name = "rlimit_nproc",
     .type = CFG_U64,
     .offset = OFF(rlimits.nproc),
     .min = 0,
     .max = 65536},
    {.section = "worker",
     .name = "rlimit_fsize",
     .type = CFG_SIZE,
     .offset = OFF(rlimits.fsize),
     .min = 0,
     .max = 1ull << 40},
    {.section = "worker",
     .name = "rlimit_memlock",
     .type = CFG_SIZE,
     .offset = OFF(rlimits.memlock),
     .min = 0,
     .max = 1ull << 40},
    {.section = "worker",
     .name = "rlimit_core",
     .type = CFG_SIZE,
     .offset = OFF(rlimits.core),
     .min = 0,
     .max = 1ull << 40},
    {.section = "worker",
     .name = "rlimit_as",
     .type = CFG_SIZE,
     .offset = OFF(rlimits.as),
     .min = 0,
     .max = 1ull << 46},
    {.section = "worker", .name = "seccomp", .type = CFG_SPECIAL, .fn = brk_config__seccomp},
    {.section = "worker",
     .name = "heartbeat_interval_ms",
     .type = CFG_U32,
     .offset = OFF(heartbeat_interval_ms),
     .min = 100,
     .max = 60000},
    {.section = "worker",
     .name = "heartbeat_timeout_ms",
     .type = CFG_U32,
     .offset = OFF(heartbeat_timeout_ms),
     .min = 200,
     .max = 600000},
    {.section = "worker", .name = "restart", .type = CFG_SPECIAL, .fn = brk_config__restart},
    {.section = "worker",
     .name = "restart_max",
     .type = CFG_U32,
     .offset = OFF(restart_max),
     .min = 0,
     .max = 1000},
    {.section = "worker",
     .name = "prestart",
     .type = CFG_U32,
     .offset = OFF(prestart),
     .min = 0,
     .max = BRK_PRESTART_MAX},
};
_Static_assert(ARRAY_SIZE(cfg_keys) <= 64, "cfg_state.seen is too small");

static const char *const cfg_sections[] = {"broker", "devices", "limits", "worker"};

static int cfg_set_path(struct cfg_state *st, const struct cfg_key *k, const char *value)
{
	char **slot = (char **)((char *)st->c + k->offset), *dup;

	if (value[0] != '/')
		return brk_config__fail(st, "%s: '%s' is not an absolute path", k->name, value);
	if (strlen(value) > k->max_len)
		return brk_config__fail(st, "%s: path longer than %zu bytes", k->name, k->max_len);
	dup = strdup(value);
	if (!dup) {
		st->error = -ENOMEM;
		return brk_config__fail(st, "out of memory");
	}
	free(*slot);
	*slot = dup;
	return 1;
}

static int cfg_set_number(struct cfg_state *st, const struct cfg_key *k, const char *value)
{
	void *slot = (char *)st->c + k->offset;
	uint64_t v;
	char *end;
	int r;

	if (k->type == CFG_SIZE) {
		r = brk_config__parse_size(value, &v);
	} else {
		r = brk_config__parse_u64(value, &v, &end);
		if (r == 0 && *end)
			r = -EINVAL;
	}
	if (r == -EINVAL)
		return brk_config__fail(st, "%s: '%s' is not a%s number", k->name, value,
					k->type == CFG_SIZE ? " size (bytes, or with K, M, G, T)"
							    : "n unsigned");
	if (r < 0 || v < k->min || v > k->max)
		return brk_config__fail(st, "%s: %s out of range (%llu..%llu)", k->name, value,
					(unsigned long long)k->min, (unsigned long long)k->max);
	if (k->type == CFG_U32)
		*(uint32_t *)slot = (uint32_t)v;
	else
		*(uint64_t *)slot = v;
	return 1;
}

static int cfg_handler(void *user, const char *section, const char *name, const char *value)
{
	struct cfg_state *st = user;
	const struct cfg_key *k = NULL;
	size_t i;
	bool b;

	if (st->failed)
		return 0;
	if (!section[0])
		return brk_config__fail(st, "'%s' outside of a section", name);
	for (i = 0; i < ARRAY_SIZE(cfg_keys); i++) {
		if (!strcmp(cfg_keys[i].section, section) && !strcmp(cfg_keys[i].name, name)) {
			k = &cfg_keys[i];
			break;
		}
	}
	if (!k)
		return brk_config__fail(st, "unknown key '%s' in [%s]", name, section);
	if (st->seen[i] && !k->repeatable)
		return brk_config__fail(st, "'%s' set twice in [%s] (first at line %u)", name,
					section, st->seen[i]);
	st->seen[i] = st->line;
	if (!value[0] && k->type != CFG_SPECIAL)
		return brk_config__fail(st, "%s: empty value", name);
	switch (k->type) {
	case CFG_PATH:
		return cfg_set_path(st, k, value);
	case CFG_U32:
	case CFG_U64:
	case CFG_SIZE:
		return cfg_set_number(st, k, value);
	case CFG_BOOL:
		if (brk_config__parse_bool(value, &b) < 0)
			return brk_config__fail(st, "%s: '%s' is not yes or no", name, value);
		*(bool *)((char *)st->c + k->offset) = b;
		return 1;
	case CFG_SPECIAL:
		if (!value[0])
			return brk_config__fail(st, "%s: empty value", name);
		return k->fn(st, value);
	}
	return brk_config__fail(st, "internal: bad key type");
}

/* A "[name]" line: libinih does not call the handler for empty sections, so unknown section
 * names are caught here, where the line number is known. */
static void cfg_check_section(struct cfg_state *st, const char *line)
{
	const char *s = line, *e;
	char name[64];

	while (isspace((unsigned char)*s))
		s++;
	if (*s != '[')
		return;
	e = strchr(s, ']');
	if (!e || (size_t)(e - s - 1) >= sizeof(name))
		return; /* libinih reports the syntax error */
	memcpy(name, s + 1, (size_t)(e - s - 1));
	name[e - s - 1] = '\0';
	for (size_t i = 0; i < ARRAY_SIZE(cfg_sections); i++)
		if (!strcmp(name, cfg_sections[i]))
			return;
	brk_config__fail(st, "unknown section [%s]", name);
}

/* libinih's fgets-style reader, here so that the line number is ours to report, and so that
 * over-long lines and NUL bytes are refused instead of being silently split or cut. */
static char *cfg_reader(char *buf, int num, void *stream)
{
	struct cfg_state *st = stream;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;

	if (st->failed)
		return NULL;
	errno = 0;
	len = getline(&line, &cap, st->f);
	if (len < 0) {
		int e = errno;

		free(line);
		if (ferror(st->f)) {
			st->line++;
			brk_config__fail(st, "cannot read: %s", strerror(e ? e : EIO));
			st->error = e ? -e : -EIO;
		}
		return NULL;
	}
	st->line++;
	if (memchr(line, '\0', (size_t)len))
		brk_config__fail(st, "line contains a NUL byte");
	else if (len > num - 1)
		brk_config__fail(st, "line longer than %d characters", num - 2);
	else
		memcpy(buf, line, (size_t)len + 1);
	free(line);
	if (!st->failed)
		cfg_check_section(st, buf);
	return st->failed ? NULL : buf;
}

static void cfg_defaults(struct brk_config *c)
{
	c->admin_uid = 0;
	c->log_level = LOG_INFO;
	c->max_dma_mappings = BRK_DMA_MAPPINGS_MAX;
	c->max_pinned_bytes = 16 * GIB;
	c->max_vms = 64;
	c->max_devices = 256;
	c->remove_timeout_ms = 5000;
	c->protocols = BRK_PROTO_NATIVE;
	/* A worker holds its device, VMM and broker sockets, a listening socket and up to 2048
	 * MSI-X irqfds in flight; it never forks, writes files or locks memory. */
	c->rlimits = (struct brk_worker_rlimits){
	    .nofile = 4096, .nproc = 1, .fsize = 0, .memlock = 0, .core = 0, .as = 0};
	c->seccomp = BRK_SECCOMP_KILL;
	c->heartbeat_interval_ms = 1000;
	c->heartbeat_timeout_ms = 3000;
	c->restart = BRK_RESTART_ON_FAILURE;
	c->restart_max = 3;
	/* Off unless asked for: a pooled worker is a worker without a device, which an operator's
	 * "no worker left" and fd counts after a removal would otherwise have to tell apart. */
	c->prestart = 0;
}

static int cfg_set_default_str(char **slot, const char *v)
{
	if (*slot)
		return 0;
	*slot = strdup(v);
	return *slot ? 0 : -ENOMEM;
}

/* The line where [section] name was set, 0 when it was not. */
static unsigned cfg_seen(const struct cfg_state *st, const char *section, const char *name)
{
	for (size_t i = 0; i < ARRAY_SIZE(cfg_keys); i++)
		if (!strcmp(cfg_keys[i].section, section) && !strcmp(cfg_keys[i].name, name))
			return st->seen[i];
	return 0;
}

/* Rules that involve more than one key, checked once the whole file is read. */
static int cfg_check_whole(struct cfg_state *st)
{
	struct brk_config *c = st->c;
	unsigned user_line = cfg_seen(st, "worker", "user");
	unsigned range_line = cfg_seen(st, "worker", "uid_range");

	if (cfg_set_default_str(&c->control_socket, "/run/vfio-broker/control.sock") < 0 ||
	    cfg_set_default_str(&c->runtime_dir, "/run/vfio-broker/vmm") < 0 ||
	    cfg_set_default_str(&c->worker_path, VB_WORKER_PATH_DEFAULT) < 0)
		return -ENOMEM;
	if (user_line && range_line) {
		st->line = range_line > user_line ? range_line : user_line;
		brk_config__fail(
		    st, "[worker] sets both user (line %u) and uid_range (line %u); choose one",
		    user_line, range_line);
		return -EINVAL;
	}
	if (!user_line && !range_line) {
		return vb_errf(st->err, -EINVAL,
			       "%s: [worker] needs user= or uid_range=: workers never run as root",
			       c->path);
	}
	if (c->heartbeat_timeout_ms <= c->heartbeat_interval_ms) {
		unsigned a = cfg_seen(st, "worker", "heartbeat_interval_ms");
		unsigned b = cfg_seen(st, "worker", "heartbeat_timeout_ms");

		st->line = a > b ? a : b;
		brk_config__fail(
		    st, "heartbeat_timeout_ms (%u) must be longer than heartbeat_interval_ms (%u)",
		    c->heartbeat_timeout_ms, c->heartbeat_interval_ms);
		return -EINVAL;
	}
	return 0;
}

/* The file must not be changeable by anyone the broker does not trust with its own powers. */
static int cfg_open(struct cfg_state *st, const char *path)
{
	_cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	struct stat sb;
	int e;

	if (fd < 0) {
		e = errno;
		return vb_errf(st->err, -e, "%s: cannot open: %s", path, strerror(e));
	}
	if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & (S_IWGRP | S_IWOTH)))
		return vb_errf(st->err, -EPERM,
			       "%s: writable by group or others (mode %04o): refusing to trust it",
			       path, (unsigned)(sb.st_mode & 07777));
	st->f = fdopen(fd, "re");
	if (!st->f) {
		e = errno;
		return vb_errf(st->err, -e, "%s: %s", path, strerror(e));
	}
	TAKE_FD(fd); /* the stream has it */
	return 0;
}

VB_DEFINE_CLEANUP(struct brk_config, brk_config_free);

int brk_config_load(const char *path, struct brk_config **ret, struct vb_err *err)
{
	_cleanup_(brk_config_freep) struct brk_config *c = calloc(1, sizeof(*c));
	struct cfg_state st = {.err = err};
	int r;

	if (!c || !(c->path = strdup(path)))
		return vb_errf(err, -ENOMEM, "%s: out of memory", path);
	cfg_defaults(c);
	st.c = c;
	r = cfg_open(&st, path);
	if (r < 0)
		goto fail;
	/* Continuation lines would make reported line numbers lie; the file has no use for them.
	 * The broker is single threaded when it reads its configuration. */
	ini_allow_multiline = false;
	ini_stop_on_first_error = true;
	r = ini_parse_stream(cfg_reader, &st, cfg_handler, &st);
	fclose(st.f);
	if (r > 0 && (!st.failed || (unsigned)r < st.line)) {
		/* libinih found a line that is neither a section, a key = value nor a comment. */
		st.failed = false;
		st.line = (unsigned)r;
		brk_config__fail(&st,
				 "syntax error: expected '[section]', 'key = value' or a comment");
	}
	if (r < 0 && !st.failed) {
		vb_errf(err, -ENOMEM, "%s: cannot parse (libinih error %d)", path, r);
		st.failed = true;
		st.error = -ENOMEM;
	}
	if (st.failed) {
		r = st.error ? st.error : -EINVAL;
		goto fail;
	}
	r = cfg_check_whole(&st);
	if (r < 0)
		goto fail;
	*ret = TAKE_PTR(c);
	return 0;
fail:
	if (err)
		err->code =
		    r; /* the message was written for the first problem; the code is final */
	return r;
}

void brk_config_free(struct brk_config *c)
{
	if (!c)
		return;
	free(c->path);
	free(c->control_socket);
	free(c->runtime_dir);
	free(c->allow);
	free(c->worker_path);
	free(c);
}
