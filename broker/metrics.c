/*
 * metrics: latency histograms and the Prometheus text format helpers. Trusts its callers to
 * pass label strings that are already valid Prometheus label syntax (they are made of fixed
 * names and canonical BDFs / checked VM names).
 */
#include "metrics.h"

#include "dispatch.h"

static const double bounds[BRK_HIST_BUCKETS] = {0.0001, 0.001, 0.01, 0.1, 1.0, 10.0};

void brk_hist_observe(struct brk_hist *h, uint64_t ns)
{
	double s = (double)ns / 1e9;

	for (int i = 0; i < BRK_HIST_BUCKETS; i++) {
		if (s <= bounds[i]) {
			h->le[i]++;
			break;
		}
	}
	h->count++;
	h->sum += s;
}

void brk_hist_print(FILE *f, const char *name, const char *labels, const struct brk_hist *h)
{
	const char *sep = labels[0] ? "," : "";
	uint64_t cum = 0;

	for (int i = 0; i < BRK_HIST_BUCKETS; i++) {
		cum += h->le[i];
		fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i],
			(unsigned long long)cum);
	}
	fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
		(unsigned long long)h->count);
	/* An empty label set is written without braces. */
	if (labels[0]) {
		fprintf(f, "%s_sum{%s} %.9f\n", name, labels, h->sum);
		fprintf(f, "%s_count{%s} %llu\n", name, labels, (unsigned long long)h->count);
	} else {
		fprintf(f, "%s_sum %.9f\n%s_count %llu\n", name, h->sum, name,
			(unsigned long long)h->count);
	}
}

void brk_metric_header(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void brk_metric_value(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	brk_metric_header(f, name, type, help);
	fprintf(f, "%s %llu\n", name, (unsigned long long)v);
}

void brk_req_stats_observe(struct brk_req_stats *st, bool ok, uint64_t ns)
{
	if (ok)
		st->ok++;
	else
		st->errors++;
	brk_hist_observe(&st->latency, ns);
}

void brk_req_stats_print(FILE *f, const char *what, const char *who, const void *table, size_t n,
			 size_t stride, const struct brk_req_stats *stats)
{
	char req[96], lat[96], help[128], labels[64];
	const char *p;

	snprintf(req, sizeof(req), "vfio_broker_%s_requests_total", what);
	snprintf(lat, sizeof(lat), "vfio_broker_%s_request_duration_seconds", what);
	snprintf(help, sizeof(help), "%s requests answered, by type and result.", who);
	brk_metric_header(f, req, "counter", help);
	p = table;
	for (size_t i = 0; i < n; i++, p += stride) {
		const struct vb_req *r = (const struct vb_req *)p;

		fprintf(f, "%s{type=\"%s\",result=\"ok\"} %llu\n", req, r->name,
			(unsigned long long)stats[r->type].ok);
		fprintf(f, "%s{type=\"%s\",result=\"error\"} %llu\n", req, r->name,
			(unsigned long long)stats[r->type].errors);
	}
	snprintf(help, sizeof(help), "%s request latency, by type.", who);
	brk_metric_header(f, lat, "histogram", help);
	p = table;
	for (size_t i = 0; i < n; i++, p += stride) {
		const struct vb_req *r = (const struct vb_req *)p;

		snprintf(labels, sizeof(labels), "type=\"%s\"", r->name);
		brk_hist_print(f, lat, labels, &stats[r->type].latency);
	}
}
