/*
 * metrics: latency histograms and the Prometheus text format helpers. Trusts its callers to
 * pass label strings that are already valid Prometheus label syntax (they are made of fixed
 * names and canonical BDFs / checked VM names).
 */
#include "metrics.h"

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
