/*
 * vfio-brokerctl internals: the command table, global options, exit codes and the two output
 * writers (aligned tables for people, JSON for machines).
 */
#ifndef VFB_BROKERCTL_H
#define VFB_BROKERCTL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vfiobroker/client.h"

/* Exit codes; documented in `vfio-brokerctl --help` (help.c). */
enum {
	EXIT_OK = 0,
	EXIT_REFUSED = 1,     /* the broker answered with an error */
	EXIT_USAGE = 2,	      /* bad command line */
	EXIT_UNREACHABLE = 3, /* could not connect to the broker's control socket */
	EXIT_BROKEN = 4,      /* no answer in time, connection lost or malformed answer */
	EXIT_LOCAL = 5,	      /* a local failure: out of memory, cannot write the output */
};

struct ctl_opts {
	const char *socket;
	bool json;
	int timeout_ms;
};

struct ctl_cmd {
	const char *name;
	int (*run)(const struct ctl_opts *o, int argc, char **argv);
	const char *synopsis; /* arguments after the command name */
	const char *summary;  /* one line */
	const char *details;  /* the command's section of the manual */
};

extern const struct ctl_cmd ctl_cmds[];
const struct ctl_cmd *ctl_cmd_find(const char *name);

/* The commands (cmds.c, stream.c): each returns an exit code. */
int ctl_cmd_add(const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_remove(const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_list(const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_status(const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_events(const struct ctl_opts *o, int argc, char **argv);
int ctl_cmd_metrics(const struct ctl_opts *o, int argc, char **argv);
/* `status` without a BDF (stream.c): the broker's own starts and take-overs. */
int ctl_broker_status(const struct ctl_opts *o);

/* help.c */
void ctl_help_main(FILE *f);
void ctl_help_cmd(FILE *f, const struct ctl_cmd *c);
void ctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* cmds.c helpers shared with main.c */
int ctl_open(const struct ctl_opts *o, struct vfb_ctl **ret);
int ctl_fail(struct vfb_ctl *ctl, const char *what, int err);

/* out.c: JSON output (json-c underneath): values are added to the open object or array, and
 * jw_finish() prints the document. Keys are NULL inside arrays. */
struct json_object;
struct jw {
	FILE *f;
	struct json_object *root;
	struct json_object *stack[16];
	int depth;
	bool oom;
};
void jw_init(struct jw *w, FILE *f);
void jw_obj_begin(struct jw *w, const char *key);
void jw_obj_end(struct jw *w);
void jw_arr_begin(struct jw *w, const char *key);
void jw_arr_end(struct jw *w);
void jw_str(struct jw *w, const char *key, const char *v);
void jw_u64(struct jw *w, const char *key, uint64_t v);
void jw_double(struct jw *w, const char *key, double v);
void jw_bool(struct jw *w, const char *key, bool v);
void jw_null(struct jw *w, const char *key);
/* Prints the document and a newline, and starts over. Out of memory, it prints nothing of it
 * and ends the program with an error. */
void jw_finish(struct jw *w);

/* out.c: aligned table; cells are copied. */
struct table;
struct table *table_new(size_t ncols, const char *const *headers);
int table_add(struct table *t, const char *const *cells);
void table_print(const struct table *t, FILE *f);
void table_free(struct table *t);

/* Writes `s` with control characters replaced, for text that came from the broker. */
void out_safe(FILE *f, const char *s);
/* "64.0 MiB"-style rendering of a byte count, into buf. */
const char *out_bytes(uint64_t v, char *buf, size_t len);
/* RFC 3339 UTC time from CLOCK_REALTIME nanoseconds. */
const char *out_time(uint64_t ns, char *buf, size_t len);

#endif
