/*
 * metrics: counters and latency histograms of vfio-brokerd, printed in the Prometheus text
 * exposition format 0.0.4 (the Metrics control request). Plain structs, no registry: each
 * module keeps its own and prints them next to each other.
 */
#ifndef VB_BROKER_METRICS_H
#define VB_BROKER_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Upper bounds of the latency buckets, in seconds: 100 us to 10 s, then +Inf. */
#define BRK_HIST_BUCKETS 6

struct brk_hist {
	uint64_t le[BRK_HIST_BUCKETS]; /* observations <= bound i (not cumulative here) */
	uint64_t count;
	double sum; /* seconds */
};

void brk_hist_observe(struct brk_hist *h, uint64_t ns);
/* Prints the _bucket/_sum/_count lines of `name` with `labels` ("type=\"x\"" or "").
 * The # HELP and # TYPE lines are the caller's, once per metric name. */
void brk_hist_print(FILE *f, const char *name, const char *labels, const struct brk_hist *h);
/* "# HELP name help\n# TYPE name type\n" */
void brk_metric_header(FILE *f, const char *name, const char *type, const char *help);
/* A metric of one unlabelled sample: its header, then "name value\n". */
void brk_metric_value(FILE *f, const char *name, const char *type, const char *help, uint64_t v);

/* What the broker counts per request type of a request table (base/dispatch.h): answers by
 * result, and latency. Kept in an array indexed by type. */
struct brk_req_stats {
	uint64_t ok, errors;
	struct brk_hist latency;
};

void brk_req_stats_observe(struct brk_req_stats *st, bool ok, uint64_t ns);

/* The two metrics of a request table: `what` names them (vfio_broker_<what>_requests_total by
 * type and result, vfio_broker_<what>_request_duration_seconds by type), `who` goes in their
 * help text. `table` is the table's entries (n, `stride` bytes apart), `stats` its counters. */
void brk_req_stats_print(FILE *f, const char *what, const char *who, const void *table, size_t n,
			 size_t stride, const struct brk_req_stats *stats);

#endif
