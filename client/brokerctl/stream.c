/*
 * stream: the vfio-brokerctl commands that are not one request and one record: `events`, which
 * follows the broker's event stream until interrupted, and `metrics`, whose Prometheus text is
 * turned into JSON for --json. The metrics text comes from the broker and is parsed as untrusted
 * input: a line that does not parse is skipped, never guessed at.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base.h"
#include "brokerctl.h"

static volatile sig_atomic_t stop_signal;

static void on_stop(int sig)
{
	stop_signal = sig;
}

static void print_event(const struct ctl_opts *o, const struct vfb_ctl_event *ev)
{
	char when[48];

	out_time(ev->timestamp_ns, when, sizeof(when));
	if (o->json) {
		struct jw w;

		jw_init(&w, stdout);
		jw_obj_begin(&w, NULL);
		jw_str(&w, "time", when);
		jw_u64(&w, "timestamp_ns", ev->timestamp_ns);
		jw_str(&w, "kind", vfb_ctl_event_kind_name(ev->kind));
		jw_str(&w, "bdf", ev->bdf);
		jw_str(&w, "vm", ev->vm);
		jw_str(&w, "detail", ev->detail);
		jw_obj_end(&w);
		jw_finish(&w);
	} else {
		printf("%s  %-16s  ", when, vfb_ctl_event_kind_name(ev->kind));
		out_safe(stdout, *ev->bdf ? ev->bdf : "-");
		printf("  vm=");
		out_safe(stdout, *ev->vm ? ev->vm : "-");
		if (*ev->detail) {
			printf("  ");
			out_safe(stdout, ev->detail);
		}
		putchar('\n');
	}
	fflush(stdout);
}

/* Prints every event that is ready; EXIT_OK while the stream goes on, else an exit code. */
static int drain_events(const struct ctl_opts *o, struct vfb_ctl *ctl)
{
	struct vfb_ctl_event *ev;
	int r;

	for (;;) {
		r = vfb_ctl_next_event(ctl, &ev);
		if (r == -EAGAIN)
			return EXIT_OK;
		if (r == -EPROTO || r == -EBADMSG)
			continue; /* one malformed message is dropped, the stream goes on */
		if (r < 0)
			return ctl_fail(ctl, "events", r);
		print_event(o, ev);
		vfb_ctl_event_free(ev);
		if (ferror(stdout))
			return EXIT_LOCAL;
	}
}

static int follow(const struct ctl_opts *o, struct vfb_ctl *ctl, const sigset_t *waitmask)
{
	struct pollfd p = {.fd = vfb_ctl_event_fd(ctl), .events = POLLIN};
	int r;

	while (!stop_signal) {
		if (ppoll(&p, 1, NULL, waitmask) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "vfio-brokerctl: events: poll: %s\n", strerror(errno));
			return EXIT_LOCAL;
		}
		r = drain_events(o, ctl);
		if (r != EXIT_OK)
			return r;
	}
	return EXIT_OK;
}

int ctl_cmd_events(const struct ctl_opts *o, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {0}};
	struct sigaction sa = {.sa_handler = on_stop};
	sigset_t block, old;
	struct vfb_ctl *ctl;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			ctl_help_cmd(stdout, ctl_cmd_find("events"));
			return EXIT_OK;
		}
		ctl_usage_error("events: bad option '%s'", argv[optind - 1]);
		return EXIT_USAGE;
	}
	if (optind < argc) {
		ctl_usage_error("events: unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	r = ctl_open(o, &ctl);
	if (r != EXIT_OK)
		return r;
	r = vfb_ctl_subscribe(ctl);
	if (r < 0) {
		r = ctl_fail(ctl, "events", r);
		vfb_ctl_close(ctl);
		return r;
	}
	/* Signals are blocked except inside ppoll(), so a Ctrl-C can never slip in between the
	 * check of stop_signal and the wait. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGHUP);
	sigprocmask(SIG_BLOCK, &block, &old);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	/* Events that came with the subscription's answer are already queued. */
	r = drain_events(o, ctl);
	if (r == EXIT_OK)
		r = follow(o, ctl, &old);
	vfb_ctl_close(ctl);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return r;
}

#define LABELS_MAX 16

struct sample {
	char name[128];
	size_t nlabels;
	struct {
		char key[64];
		char value[256];
	} labels[LABELS_MAX];
	double value;
};

/* Parses `{k="v",...}` at *s. */
static int parse_labels(const char **s, struct sample *m)
{
	const char *p = *s + 1;

	while (*p != '}') {
		size_t kn = strcspn(p, "=}"), n = 0;

		if (m->nlabels == LABELS_MAX || kn == 0 || kn >= sizeof(m->labels[0].key) ||
		    p[kn] != '=' || p[kn + 1] != '"')
			return -EINVAL;
		memcpy(m->labels[m->nlabels].key, p, kn);
		m->labels[m->nlabels].key[kn] = '\0';
		for (p += kn + 2; *p && *p != '"'; p++) {
			char ch = *p;

			if (ch == '\\' && p[1]) {
				p++;
				ch = *p == 'n' ? '\n' : *p;
			}
			if (n + 1 >= sizeof(m->labels[0].value))
				return -EINVAL;
			m->labels[m->nlabels].value[n++] = ch;
		}
		if (*p != '"')
			return -EINVAL;
		m->labels[m->nlabels++].value[n] = '\0';
		p++;
		if (*p == ',')
			p++;
		else if (*p != '}')
			return -EINVAL;
	}
	*s = p + 1;
	return 0;
}

/* One sample line of the text format: name, optional labels, value, optional timestamp. */
static int parse_sample(const char *line, struct sample *m)
{
	const char *p = line;
	size_t n = strcspn(line, "{ ");
	char *end;

	memset(m, 0, sizeof(*m));
	if (n == 0 || n >= sizeof(m->name))
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		char c = line[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
		      (i > 0 && c >= '0' && c <= '9')))
			return -EINVAL;
	}
	memcpy(m->name, line, n);
	p += n;
	if (*p == '{' && parse_labels(&p, m) < 0)
		return -EINVAL;
	if (*p != ' ')
		return -EINVAL;
	errno = 0;
	m->value = strtod(p + 1, &end);
	if (end == p + 1 || (*end != '\0' && *end != ' '))
		return -EINVAL;
	return 0;
}

static void metrics_json(const char *text)
{
	const char *line = text;
	struct sample m;
	struct jw w;

	jw_init(&w, stdout);
	jw_obj_begin(&w, NULL);
	jw_arr_begin(&w, "samples");
	while (*line) {
		size_t len = strcspn(line, "\n");
		char *l = strndup(line, len);

		line += len + (line[len] ? 1 : 0);
		/* Comments (# HELP, # TYPE) and lines that do not parse are left out. */
		if (l && *l != '#' && parse_sample(l, &m) == 0) {
			jw_obj_begin(&w, NULL);
			jw_str(&w, "name", m.name);
			jw_obj_begin(&w, "labels");
			for (size_t i = 0; i < m.nlabels; i++)
				jw_str(&w, m.labels[i].key, m.labels[i].value);
			jw_obj_end(&w);
			jw_double(&w, "value", m.value);
			jw_obj_end(&w);
		}
		free(l);
	}
	jw_arr_end(&w);
	jw_str(&w, "text", text);
	jw_obj_end(&w);
	jw_finish(&w);
}

/*
 * `status` without a BDF: the broker itself. Read from its metrics (the samples the daemon
 * exports for its starts, its last take-over of an earlier broker's state and its devices), so
 * that an older broker without them is told apart ("not reported") rather than shown as zeros.
 */
struct broker_status {
	bool have_starts, have_adoption;
	double starts, attempted, adoption_ms, adopted, quiesced, untrusted;
	double devices, vms, workers, worker_restarts;
	char reason[256];
};

static void broker_status_take(struct broker_status *b, const struct sample *m)
{
	static const struct {
		const char *name;
		size_t off;
	} plain[] = {
	    {"vfio_broker_starts_total", offsetof(struct broker_status, starts)},
	    {"vfio_broker_adoption_attempted", offsetof(struct broker_status, attempted)},
	    {"vfio_broker_adoption_milliseconds", offsetof(struct broker_status, adoption_ms)},
	    {"vfio_broker_devices", offsetof(struct broker_status, devices)},
	    {"vfio_broker_vms", offsetof(struct broker_status, vms)},
	    {"vfio_broker_workers", offsetof(struct broker_status, workers)},
	    {"vfio_broker_worker_restarts_total", offsetof(struct broker_status, worker_restarts)},
	};
	const char *outcome = m->nlabels ? m->labels[0].value : "";

	for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
		if (strcmp(m->name, plain[i].name) == 0 && m->nlabels == 0) {
			*(double *)((char *)b + plain[i].off) = m->value;
			b->have_starts |= i == 0;
			b->have_adoption |= i == 1;
			return;
		}
	}
	if (strcmp(m->name, "vfio_broker_adoption_devices") == 0 && m->nlabels == 1) {
		if (strcmp(outcome, "adopted") == 0)
			b->adopted = m->value;
		else if (strcmp(outcome, "quiesced") == 0)
			b->quiesced = m->value;
	} else if (strcmp(m->name, "vfio_broker_adoption_untrusted") == 0 && m->nlabels == 1) {
		b->untrusted = m->value;
		snprintf(b->reason, sizeof(b->reason), "%s", m->labels[0].value);
	}
}

static void broker_status_parse(const char *text, struct broker_status *b)
{
	const char *line = text;
	struct sample m;

	memset(b, 0, sizeof(*b));
	while (*line) {
		size_t len = strcspn(line, "\n");
		char *l = strndup(line, len);

		line += len + (line[len] ? 1 : 0);
		if (l && *l != '#' && parse_sample(l, &m) == 0)
			broker_status_take(b, &m);
		free(l);
	}
}

static void broker_status_json(const struct broker_status *b)
{
	struct jw w;

	jw_init(&w, stdout);
	jw_obj_begin(&w, NULL);
	jw_u64(&w, "devices", (uint64_t)b->devices);
	jw_u64(&w, "vms", (uint64_t)b->vms);
	jw_u64(&w, "workers", (uint64_t)b->workers);
	jw_u64(&w, "worker_restarts", (uint64_t)b->worker_restarts);
	if (b->have_starts)
		jw_u64(&w, "starts", (uint64_t)b->starts);
	else
		jw_null(&w, "starts");
	if (b->have_adoption) {
		jw_obj_begin(&w, "last_start");
		jw_bool(&w, "took_over", b->attempted != 0);
		jw_u64(&w, "milliseconds", (uint64_t)b->adoption_ms);
		jw_u64(&w, "devices_adopted", (uint64_t)b->adopted);
		jw_u64(&w, "devices_quiesced", (uint64_t)b->quiesced);
		if (b->untrusted != 0)
			jw_str(&w, "untrusted_state", b->reason);
		else
			jw_null(&w, "untrusted_state");
		jw_obj_end(&w);
	} else {
		jw_null(&w, "last_start");
	}
	jw_obj_end(&w);
	jw_finish(&w);
}

static void broker_status_print(const struct broker_status *b)
{
	printf("devices          %.0f (%.0f vms, %.0f workers)\n", b->devices, b->vms, b->workers);
	printf("worker restarts  %.0f\n", b->worker_restarts);
	if (b->have_starts)
		printf("broker starts    %.0f\n", b->starts);
	else
		printf("broker starts    not reported\n");
	if (!b->have_adoption) {
		printf("last start       not reported\n");
		return;
	}
	if (b->attempted == 0) {
		printf("last start       fresh (no earlier broker's state)\n");
		return;
	}
	printf("last start       took over an earlier broker's state in %.0f ms\n", b->adoption_ms);
	printf("devices adopted  %.0f\ndevices quiesced %.0f\n", b->adopted, b->quiesced);
	printf("untrusted state  ");
	out_safe(stdout, b->untrusted != 0 ? (*b->reason ? b->reason : "yes") : "no");
	putchar('\n');
}

int ctl_broker_status(const struct ctl_opts *o)
{
	struct broker_status b;
	struct vfb_ctl *ctl;
	char *text;
	int r;

	r = ctl_open(o, &ctl);
	if (r != EXIT_OK)
		return r;
	r = vfb_ctl_metrics(ctl, &text);
	if (r < 0) {
		r = ctl_fail(ctl, "status", r);
		vfb_ctl_close(ctl);
		return r;
	}
	vfb_ctl_close(ctl);
	broker_status_parse(text, &b);
	free(text);
	if (o->json)
		broker_status_json(&b);
	else
		broker_status_print(&b);
	if (fflush(stdout) != 0 || ferror(stdout))
		return EXIT_LOCAL;
	return EXIT_OK;
}

int ctl_cmd_metrics(const struct ctl_opts *o, int argc, char **argv)
{
	static const struct option lo[] = {{"help", no_argument, NULL, 'h'}, {0}};
	struct vfb_ctl *ctl;
	char *text;
	int c, r;

	while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		if (c == 'h') {
			ctl_help_cmd(stdout, ctl_cmd_find("metrics"));
			return EXIT_OK;
		}
		ctl_usage_error("metrics: bad option '%s'", argv[optind - 1]);
		return EXIT_USAGE;
	}
	if (optind < argc) {
		ctl_usage_error("metrics: unexpected argument '%s'", argv[optind]);
		return EXIT_USAGE;
	}
	r = ctl_open(o, &ctl);
	if (r != EXIT_OK)
		return r;
	r = vfb_ctl_metrics(ctl, &text);
	if (r < 0) {
		r = ctl_fail(ctl, "metrics", r);
		vfb_ctl_close(ctl);
		return r;
	}
	vfb_ctl_close(ctl);
	if (o->json)
		metrics_json(text);
	else
		fputs(text, stdout);
	free(text);
	if (fflush(stdout) != 0 || ferror(stdout))
		return EXIT_LOCAL;
	return EXIT_OK;
}
