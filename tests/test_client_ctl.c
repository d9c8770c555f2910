/*
 * test_client_ctl: vfio-brokerctl run as a program against a fake broker (a thread that speaks
 * the control protocol on a socket in a temporary directory and records what it was asked):
 * argument parsing, tables, JSON (parsed back with a small strict parser), exit codes and the
 * manual. Also the control half of libvfiobroker where the CLI does not reach. The fake broker,
 * the runner and the JSON reader are brokerctl_env.c's.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "base.h"
#include "common.pb-c.h"
#include "control.pb-c.h"
#include "ipc.h"
#include "vfiobroker/client.h"
#include "test_wait.h"
#include "brokerctl_env.h"

/* What a broker that took over an earlier one's state exports (broker/daemon_status.c). */
static const char BROKER_METRICS[] = "# TYPE vfio_broker_devices gauge\n"
				     "vfio_broker_devices 3\n"
				     "vfio_broker_vms 2\n"
				     "vfio_broker_workers 2\n"
				     "vfio_broker_worker_restarts_total 5\n"
				     "vfio_broker_starts_total 4\n"
				     "vfio_broker_adoption_attempted 1\n"
				     "vfio_broker_adoption_milliseconds 37\n"
				     "vfio_broker_adoption_devices{outcome=\"adopted\"} 2\n"
				     "vfio_broker_adoption_devices{outcome=\"quiesced\"} 1\n"
				     "vfio_broker_adoption_untrusted{reason=\"\"} 0\n";

static void test_ctl_add_options_reach_broker(void **state)
{
	struct fake *f = *state;
	struct result r;

	CLI(&r, "--socket", f->path, "add", "00:03.0", "--vm", "web1", "--owner", "107:108",
	    "--bind", "--allow-mmap", "--max-mappings", "4096", "--max-pinned", "2G");
	assert_int_equal(r.code, 0);
	assert_string_equal(f->add_bdf, KNOWN_BDF); /* normalized before sending */
	assert_string_equal(f->add_vm, "web1");
	assert_int_equal(f->add_uid, 107);
	assert_int_equal(f->add_gid, 108);
	assert_true(f->add_bind);
	assert_true(f->add_mmap);
	assert_int_equal(f->add_maps, 4096);
	assert_int_equal(f->add_pinned, 2ull << 30);
	assert_non_null(strstr(r.out, WORKER_SOCK));
	assert_non_null(strstr(r.out, "4321"));
}

static void test_ctl_add_json_parses_back(void **state)
{
	struct fake *f = *state;
	struct result r;
	struct json_object *j;

	CLI(&r, "--socket", f->path, "--json", "add", KNOWN_BDF, "--vm", "web1");
	assert_int_equal(r.code, 0);
	j = jparse(r.out);
	assert_non_null(j);
	assert_string_equal(jstr(j, "socket_path"), WORKER_SOCK);
	assert_string_equal(jstr(j, "bdf"), KNOWN_BDF);
	assert_string_equal(jstr(j, "iommu_backend"), "vfio-type1v2");
	assert_true(jnum(j, "worker_pid") == 4321);
	assert_true(jnum(j, "iommu_group") == 7);
	/* Without --bind and --allow-mmap the broker is asked for neither. */
	assert_false(f->add_bind);
	assert_false(f->add_mmap);
	assert_int_equal(f->add_uid, getuid());
	json_object_put(j);
}

static void test_ctl_add_refused_exit_1_with_reason(void **state)
{
	struct fake *f = *state;
	struct result r;

	CLI(&r, "--socket", f->path, "add", TAKEN_BDF, "--vm", "web1");
	assert_int_equal(r.code, 1);
	assert_non_null(strstr(r.err, "already assigned to vm db"));
	assert_string_equal(r.out, "");
}

static void test_ctl_bad_arguments_exit_2_nothing_sent(void **state)
{
	struct fake *f = *state;
	static const char *const cases[][8] = {
	    {"add", "0000:00:03", "--vm", "web1"},
	    {"add", "0000:00:20.0", "--vm", "web1"},
	    {"add", KNOWN_BDF},
	    {"add", KNOWN_BDF, "--vm", "../etc"},
	    {"add", KNOWN_BDF, "--vm", "w", "--max-pinned", "12Q"},
	    {"add", KNOWN_BDF, "--vm", "w", "--max-mappings", "-1"},
	    {"add", KNOWN_BDF, "--vm", "w", "--owner", "no-such-user-here"},
	    {"add", KNOWN_BDF, "--vm", "w", "--frobnicate"},
	    {"remove", KNOWN_BDF, "--timeout", "soon"},
	    {"remove"},
	    {"status", "xyz"},
	    {"status", KNOWN_BDF, "extra"},
	    {"list", "--all"},
	    {"launch"},
	};
	size_t before = f->requests;

	for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
		const char *args[12] = {"--socket", f->path};
		struct result r;
		size_t n = 2;

		for (size_t k = 0; cases[i][k]; k++)
			args[n++] = cases[i][k];
		run_cli(&r, args);
		if (r.code != 2)
			print_message("# case %zu (%s): exit %d: %s\n", i, cases[i][0], r.code,
				      r.err);
		assert_int_equal(r.code, 2);
		assert_non_null(strstr(r.err, "vfio-brokerctl: "));
	}
	assert_int_equal(f->requests, before);
}

static void test_ctl_global_option_errors_exit_2(void **state)
{
	struct result r;

	CLI(&r, "--timeout", "abc", "list");
	assert_int_equal(r.code, 2);
	CLI(&r, "--bogus", "list");
	assert_int_equal(r.code, 2);
	CLI(&r, "--json");
	assert_int_equal(r.code, 2);
	CLI(&r, "help", "nosuchcommand");
	assert_int_equal(r.code, 2);
}

static void test_ctl_unreachable_broker_exit_3(void **state)
{
	struct fake *f = *state;
	char missing[160];
	struct result r;

	snprintf(missing, sizeof(missing), "%s/absent.sock", f->dir);
	CLI(&r, "--socket", missing, "list");
	assert_int_equal(r.code, 3);
	assert_non_null(strstr(r.err, missing));
}

static void test_ctl_socket_from_environment(void **state)
{
	struct fake *f = *state;
	size_t before = f->requests;
	struct result r;

	setenv("VFIO_BROKER_SOCKET", f->path, 1);
	CLI(&r, "list");
	unsetenv("VFIO_BROKER_SOCKET");
	assert_int_equal(r.code, 0);
	assert_int_equal(f->requests, before + 1);
}

static void test_ctl_silent_broker_exit_4(void **state)
{
	struct fake *f = *state;
	struct result r;

	f->silent = true;
	CLI(&r, "--socket", f->path, "--timeout", "200", "metrics");
	f->silent = false;
	assert_int_equal(r.code, 4);
	assert_non_null(strstr(r.err, "did not answer"));
}

/* Where byte `at` of a line is on screen: UTF-8 continuation bytes take no column. */
static size_t screen_col(const char *line, size_t at)
{
	size_t n = 0;

	for (size_t i = 0; i < at; i++)
		if (((unsigned char)line[i] & 0xc0) != 0x80)
			n++;
	return n;
}

/* The byte that is on screen column `col` of a line, or NULL past its end. */
static const char *at_col(const char *line, size_t len, size_t col)
{
	for (size_t i = 0; i < len; i++)
		if (screen_col(line, i) == col && ((unsigned char)line[i] & 0xc0) != 0x80)
			return line + i;
	return NULL;
}

/* The column headed `header_word` starts at the same screen column in every line. */
static void assert_aligned(const char *text, const char *header_word, size_t min_lines)
{
	const char *hdr_at = strstr(text, header_word);
	size_t col, lines = 0;
	const char *l = text;

	assert_non_null(hdr_at);
	col = screen_col(text, (size_t)(hdr_at - text));
	while (*l) {
		const char *eol = strchr(l, '\n');
		size_t len = eol ? (size_t)(eol - l) : strlen(l);
		const char *c = at_col(l, len, col);

		/* A column begins after two spaces of padding and is not blank itself. */
		assert_non_null(c);
		assert_true(*c != ' ');
		assert_true(c[-1] == ' ' && c[-2] == ' ');
		lines++;
		l += len + (eol ? 1 : 0);
	}
	assert_true(lines >= min_lines);
}

static void test_ctl_list_table_aligned_and_sanitized(void **state)
{
	struct fake *f = *state;
	struct result r;

	CLI(&r, "--socket", f->path, "list");
	assert_int_equal(r.code, 0);
	assert_aligned(r.out, "STATE", 3);
	assert_aligned(r.out, "PID", 3);
	assert_aligned(r.out, "SOCKET", 3);
	assert_aligned(r.out, "RESTARTS", 3);
	assert_non_null(strstr(r.out, "faulted"));
	assert_non_null(strstr(r.out, "1.5 KiB"));
	/* The broker's control characters never reach the terminal. */
	assert_null(strchr(r.out, '\t'));
	assert_null(strchr(r.out, '\x01'));
}

static void test_ctl_list_json_escapes_any_string(void **state)
{
	struct fake *f = *state;
	struct json_object *devs, *d;
	struct result r;
	struct json_object *j;

	CLI(&r, "--socket", f->path, "--json", "list");
	assert_int_equal(r.code, 0);
	j = jparse(r.out);
	assert_non_null(j);
	devs = jget(j, "devices");
	assert_non_null(devs);
	assert_int_equal(json_object_array_length(devs), 2);
	d = jat(devs, 1);
	assert_string_equal(jstr(d, "vm"), NASTY_VM);
	assert_string_equal(jstr(d, "state"), "faulted");
	assert_string_equal(jstr(d, "last_fault"), "worker killed by signal 9");
	assert_true(jnum(d, "pinned_bytes") == 1536);
	assert_true(jnull(jat(devs, 0), "last_fault"));
	json_object_put(j);
}

static void test_ctl_status_human_and_json(void **state)
{
	struct fake *f = *state;
	struct json_object *irq;
	struct result r;
	struct json_object *j;

	CLI(&r, "--socket", f->path, "status", "00:03.0");
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(r.out, "connected"));
	assert_non_null(strstr(r.out, "msix:5"));
	assert_non_null(strstr(r.out, "3.0 GiB"));
	CLI(&r, "--socket", f->path, "--json", "status", KNOWN_BDF);
	assert_int_equal(r.code, 0);
	j = jparse(r.out);
	assert_non_null(j);
	assert_true(jnum(j, "pinned_bytes") == (double)(3ull << 30));
	assert_true(jnum(j, "resets") == 2);
	irq = jat(jget(j, "irqs"), 0);
	assert_non_null(irq);
	assert_true(jnum(irq, "index") == 2 && jnum(irq, "enabled") == 5);
	json_object_put(j);
}

static void test_ctl_status_unknown_device_exit_1(void **state)
{
	struct fake *f = *state;
	struct result r;

	CLI(&r, "--socket", f->path, "status", "0000:00:05.0");
	assert_int_equal(r.code, 1);
	assert_non_null(strstr(r.err, "no device 0000:00:05.0 is assigned"));
}

static void test_ctl_remove_timeout_and_force_reach_broker(void **state)
{
	struct fake *f = *state;
	struct result r;
	struct json_object *j;

	CLI(&r, "--socket", f->path, "remove", KNOWN_BDF, "--timeout", "2500");
	assert_int_equal(r.code, 0);
	assert_int_equal(f->rm_timeout, 2500);
	assert_false(f->rm_force);
	assert_non_null(strstr(r.out, "acknowledged"));
	CLI(&r, "--socket", f->path, "--json", "remove", "00:03.0", "--force");
	assert_int_equal(r.code, 0);
	assert_true(f->rm_force);
	assert_string_equal(f->rm_bdf, KNOWN_BDF);
	j = jparse(r.out);
	assert_non_null(j);
	assert_true(json_object_is_type(jget(j, "vmm_acknowledged"), json_type_boolean));
	assert_false(json_object_get_boolean(jget(j, "vmm_acknowledged")));
	json_object_put(j);
}

static void test_ctl_metrics_json_samples(void **state)
{
	struct fake *f = *state;
	struct json_object *s, *lab;
	struct result r;
	struct json_object *j;

	CLI(&r, "--socket", f->path, "--json", "metrics");
	assert_int_equal(r.code, 0);
	j = jparse(r.out);
	assert_non_null(j);
	s = jget(j, "samples");
	assert_non_null(s);
	assert_int_equal(json_object_array_length(s), 2); /* the garbage line is left out */
	assert_string_equal(jstr(jat(s, 1), "name"), "vb_dma_pinned_bytes");
	lab = jget(jat(s, 1), "labels");
	assert_string_equal(jstr(lab, "vm"), "web1");
	assert_string_equal(jstr(lab, "note"), "a \"q\"");
	assert_true(jnum(jat(s, 1), "value") == 3221225472.0);
	assert_non_null(strstr(jstr(j, "text"), "# TYPE vb_devices gauge"));
	json_object_put(j);
}

/* `status` without a BDF: the broker's starts and its last take-over, from its metrics. */
static void test_ctl_status_broker_took_over_reported(void **state)
{
	struct fake *f = *state;
	struct json_object *j, *last;
	struct result r;

	f->metrics_text = BROKER_METRICS;
	CLI(&r, "--socket", f->path, "status");
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(r.out, "devices          3 (2 vms, 2 workers)\n"));
	assert_non_null(strstr(r.out, "worker restarts  5\n"));
	assert_non_null(strstr(r.out, "broker starts    4\n"));
	assert_non_null(strstr(r.out, "took over an earlier broker's state in 37 ms\n"));
	assert_non_null(strstr(r.out, "devices adopted  2\ndevices quiesced 1\n"));
	assert_non_null(strstr(r.out, "untrusted state  no\n"));
	CLI(&r, "--socket", f->path, "--json", "status");
	assert_int_equal(r.code, 0);
	j = jparse(r.out);
	assert_non_null(j);
	assert_true(jnum(j, "starts") == 4.0);
	assert_true(jnum(j, "devices") == 3.0);
	last = jget(j, "last_start");
	assert_non_null(last);
	assert_true(json_object_get_boolean(jget(last, "took_over")));
	assert_true(jnum(last, "milliseconds") == 37.0);
	assert_true(jnum(last, "devices_adopted") == 2.0);
	assert_true(jnum(last, "devices_quiesced") == 1.0);
	assert_true(jnull(last, "untrusted_state"));
	json_object_put(j);
	f->metrics_text = NULL;
}

/* An untrusted state's reason is shown; a broker without these samples is "not reported",
 * never zeros. */
static void test_ctl_status_broker_untrusted_and_old_broker(void **state)
{
	static const char untrusted[] =
	    "vfio_broker_starts_total 2\n"
	    "vfio_broker_adoption_attempted 1\n"
	    "vfio_broker_adoption_milliseconds 9\n"
	    "vfio_broker_adoption_devices{outcome=\"adopted\"} 0\n"
	    "vfio_broker_adoption_devices{outcome=\"quiesced\"} 2\n"
	    "vfio_broker_adoption_untrusted{reason=\"no header slot has the magic VBRKSTAT\"} 1\n";
	struct fake *f = *state;
	struct json_object *j;
	struct result r;

	f->metrics_text = untrusted;
	CLI(&r, "--socket", f->path, "status");
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(r.out, "devices quiesced 2\n"));
	assert_non_null(strstr(r.out, "untrusted state  no header slot has the magic VBRKSTAT\n"));
	CLI(&r, "--socket", f->path, "--json", "status");
	j = jparse(r.out);
	assert_non_null(j);
	assert_string_equal(jstr(jget(j, "last_start"), "untrusted_state"),
			    "no header slot has the magic VBRKSTAT");
	json_object_put(j);

	f->metrics_text = NULL; /* a broker that exports none of them */
	CLI(&r, "--socket", f->path, "status");
	assert_int_equal(r.code, 0);
	assert_non_null(strstr(r.out, "broker starts    not reported\n"));
	assert_non_null(strstr(r.out, "last start       not reported\n"));
	CLI(&r, "--socket", f->path, "--json", "status");
	j = jparse(r.out);
	assert_non_null(j);
	assert_true(jnull(j, "starts"));
	assert_true(jnull(j, "last_start"));
	json_object_put(j);
}

static void test_ctl_events_stream_until_sigterm(void **state)
{
	struct fake *f = *state;
	const char *const args[] = {"--socket", f->path, "--json", "events", NULL};
	char buf[4096] = "";
	size_t len = 0, lines = 0;
	int ofd, efd, st;
	bool open_ = true;
	pid_t pid = spawn(args, &ofd, &efd);

	while (open_ && lines < 2) {
		struct pollfd p = {.fd = ofd, .events = POLLIN};

		assert_true(poll(&p, 1, TEST_HANG_MS) == 1);
		drain(ofd, buf, sizeof(buf), &len, &open_);
		lines = 0;
		for (const char *c = buf; (c = strchr(c, '\n')); c++)
			lines++;
	}
	assert_int_equal(lines, 2);
	/* Still running: the stream goes on until a signal. */
	assert_int_equal(waitpid(pid, &st, WNOHANG), 0);
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(ofd);
	close(efd);
	{
		char *nl = strchr(buf, '\n');
		struct json_object *a, *b;

		*nl = '\0';
		a = jparse(buf);
		b = jparse(nl + 1);
		assert_non_null(a);
		assert_non_null(b);
		assert_string_equal(jstr(a, "kind"), "device-added");
		assert_string_equal(jstr(a, "time"), "2023-11-14T22:13:20.123Z");
		assert_string_equal(jstr(b, "kind"), "worker-crashed");
		assert_string_equal(jstr(b, "detail"), "signal \"9\"");
		json_object_put(a);
		json_object_put(b);
	}
}

static void test_ctl_help_documents_every_command(void **state)
{
	static const char *const sections[] = {
	    "NAME",	"SYNOPSIS", "COMMANDS", "EXIT STATUS", "ENVIRONMENT",	    "FILES",
	    "EXAMPLES", "--socket", "--json",	"--timeout",   "VFIO_BROKER_SOCKET"};
	static const char *const cmds[] = {"add", "remove", "list", "status", "events", "metrics"};
	static const char *const add_opts[] = {"--vm",	       "--owner",	 "--bind",
					       "--allow-mmap", "--max-mappings", "--max-pinned"};
	struct result r, c;

	CLI(&r, "--help");
	assert_int_equal(r.code, 0);
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++)
		assert_non_null(strstr(r.out, sections[i]));
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++) {
		char head[32];

		snprintf(head, sizeof(head), "\n  %s", cmds[i]);
		assert_non_null(strstr(r.out, head));
		CLI(&c, "help", cmds[i]);
		assert_int_equal(c.code, 0);
		assert_non_null(strstr(c.out, cmds[i]));
		/* `COMMAND --help` is the same section. */
		{
			struct result d;

			CLI(&d, cmds[i], "--help");
			assert_int_equal(d.code, 0);
			assert_string_equal(d.out, c.out);
		}
	}
	for (size_t i = 0; i < ARRAY_SIZE(add_opts); i++)
		assert_non_null(strstr(r.out, add_opts[i]));
	/* Every exit code the program uses is documented. */
	for (int code = 0; code <= 5; code++) {
		char line[16];

		snprintf(line, sizeof(line), "\n    %d   ", code);
		assert_non_null(strstr(r.out, line));
	}
}

static void test_ctl_lib_list_and_events_without_cli(void **state)
{
	struct fake *f = *state;
	struct vfb_ctl_device *list = NULL;
	struct vfb_ctl_event *ev = NULL;
	struct vfb_ctl *ctl = NULL;
	struct pollfd p;
	size_t n = 0;

	assert_int_equal(vfb_ctl_connect(f->path, 1, &ctl), -EINVAL);
	assert_null(ctl);
	assert_int_equal(vfb_ctl_connect(f->path, 0, &ctl), 0);
	assert_int_equal(vfb_ctl_list(ctl, &list, &n), 0);
	assert_int_equal(n, 2);
	assert_string_equal(list[1].vm, NASTY_VM);
	assert_string_equal(vfb_ctl_state_name(list[1].state), "faulted");
	vfb_ctl_device_list_free(list, n);
	assert_int_equal(vfb_ctl_subscribe(ctl), 0);
	p = (struct pollfd){.fd = vfb_ctl_event_fd(ctl), .events = POLLIN};
	assert_int_equal(poll(&p, 1, TEST_HANG_MS), 1);
	assert_int_equal(vfb_ctl_next_event(ctl, &ev), 0);
	assert_int_equal(ev->kind, VFB_CTL_EVENT_DEVICE_ADDED);
	assert_string_equal(ev->bdf, KNOWN_BDF);
	vfb_ctl_event_free(ev);
	{
		struct vfb_ctl_add_request rq = {.bdf = KNOWN_BDF, .vm = "w", .flags = 1u << 7};
		struct vfb_ctl_add_reply rep;

		assert_int_equal(vfb_ctl_add(ctl, &rq, &rep), -EINVAL);
		assert_int_equal(vfb_ctl_remove(ctl, KNOWN_BDF, 0, 1u << 3, NULL), -EINVAL);
	}
	vfb_ctl_close(ctl);
}

/* The library asks for as many devices a page as the broker's datagram holds, and follows the
 * cursor until the broker says nothing follows: 150 devices of which a page holds 64 are three
 * requests; 150 that all fit are one (with pages of 64 asked for, they were three); vfio-brokerctl
 * list shows all of them. */
static void test_ctl_list_paged_every_page_fetched(void **state)
{
	struct fake *f = *state;
	struct vfb_ctl_device *list = NULL;
	struct vfb_ctl *ctl = NULL;
	struct result r;
	size_t n = 0;

	f->paged_n = 150;
	f->paged_fit = 64;
	f->list_pages = 0;
	assert_int_equal(vfb_ctl_connect(f->path, 0, &ctl), 0);
	assert_int_equal(vfb_ctl_list(ctl, &list, &n), 0);
	assert_int_equal(f->list_pages, 3);
	assert_int_equal(f->list_max, UINT32_MAX);
	assert_int_equal(n, 150);
	for (size_t i = 0; i < n; i++) {
		char want[24];

		snprintf(want, sizeof(want), "0000:%02x:00.0", (unsigned)i);
		assert_string_equal(list[i].bdf, want);
		assert_string_equal(list[i].vm, "web1");
		assert_string_equal(list[i].socket_path, "/s/a");
		assert_string_equal(list[i].vfio_user_socket_path, "");
		assert_string_equal(list[i].last_fault, "");
	}
	vfb_ctl_device_list_free(list, n);
	f->paged_fit = 0;
	f->list_pages = 0;
	assert_int_equal(vfb_ctl_list(ctl, &list, &n), 0);
	assert_int_equal(f->list_pages, 1);
	assert_int_equal(n, 150);
	assert_string_equal(list[149].bdf, "0000:95:00.0");
	vfb_ctl_device_list_free(list, n);
	/* A broker whose cursor stands still would keep a client asking forever. */
	f->paged_fit = 64;
	f->paged_stuck = true;
	assert_int_equal(vfb_ctl_list(ctl, &list, &n), -EPROTO);
	f->paged_stuck = false;
	vfb_ctl_close(ctl);

	f->paged_n = 70;
	f->list_pages = 0;
	CLI(&r, "--socket", f->path, "list");
	f->paged_n = 0;
	f->paged_fit = 0;
	assert_int_equal(r.code, 0);
	assert_int_equal(f->list_pages, 2);
	assert_non_null(strstr(r.out, "0000:00:00.0"));
	assert_non_null(strstr(r.out, "0000:45:00.0")); /* the 70th */
	assert_null(strstr(r.out, "0000:46:00.0"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ctl_add_options_reach_broker),
	    cmocka_unit_test(test_ctl_add_json_parses_back),
	    cmocka_unit_test(test_ctl_add_refused_exit_1_with_reason),
	    cmocka_unit_test(test_ctl_bad_arguments_exit_2_nothing_sent),
	    cmocka_unit_test(test_ctl_global_option_errors_exit_2),
	    cmocka_unit_test(test_ctl_unreachable_broker_exit_3),
	    cmocka_unit_test(test_ctl_socket_from_environment),
	    cmocka_unit_test(test_ctl_silent_broker_exit_4),
	    cmocka_unit_test(test_ctl_list_table_aligned_and_sanitized),
	    cmocka_unit_test(test_ctl_list_json_escapes_any_string),
	    cmocka_unit_test(test_ctl_status_human_and_json),
	    cmocka_unit_test(test_ctl_status_unknown_device_exit_1),
	    cmocka_unit_test(test_ctl_remove_timeout_and_force_reach_broker),
	    cmocka_unit_test(test_ctl_metrics_json_samples),
	    cmocka_unit_test(test_ctl_status_broker_took_over_reported),
	    cmocka_unit_test(test_ctl_status_broker_untrusted_and_old_broker),
	    cmocka_unit_test(test_ctl_events_stream_until_sigterm),
	    cmocka_unit_test(test_ctl_help_documents_every_command),
	    cmocka_unit_test(test_ctl_lib_list_and_events_without_cli),
	    cmocka_unit_test(test_ctl_list_paged_every_page_fetched),
	};

	return cmocka_run_group_tests(tests, fake_setup, fake_teardown);
}
