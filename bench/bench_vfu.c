/*
 * bench_vfu: what a vfio-user config read costs against the stream it travels on. A stock VMM
 * reading 4 bytes of config space sends a 32-byte REGION_READ (header + offset, region, count)
 * to the worker's vfio-user socket and reads a 36-byte reply; the worker frames it, checks it,
 * runs it through the config-space emulation and answers. The baseline is a raw AF_UNIX
 * SOCK_STREAM ping-pong of the same sizes with an echo process (forked: a process of its own,
 * as the worker is, so both sides pay the same switch between address spaces): what the socket
 * alone costs.
 *
 *   vfu_cfg_read_4B_1cpu  vs raw_stream_pingpong_32B_36B_1cpu  (client and answering end on one
 * CPU) vfu_cfg_read_4B_2cpu  vs raw_stream_pingpong_32B_36B_2cpu  (on two different CPUs)
 *
 * On one CPU each round trip is two context switches on that CPU: the software's own cost. On
 * two, each message wakes a task on the other CPU (bench_placements()). The worker and the echo
 * process always share the answering CPU. Usage: bench_vfu [WORKER [IMAGE]].
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "le.h"
#include "vfu_client.h"

#define REQ_LEN 32 /* header + REGION_READ */
#define REP_LEN 36 /* header + offset, region, count + 4 bytes */

struct vb {
	pid_t worker;
	char dir[64], sock[96];
	int vfu;    /* client end of the vfio-user connection */
	int raw[2]; /* client end, echo end (the echo process's) */
	pid_t echo;
	uint8_t req[REQ_LEN];
	const char *step;
};

static int read_full(int fd, uint8_t *b, size_t len)
{
	while (len) {
		ssize_t n = recv(fd, b, len, 0);

		if (n <= 0)
			return n == 0 ? -EPIPE : -errno;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const uint8_t *b, size_t len)
{
	while (len) {
		ssize_t n = send(fd, b, len, MSG_NOSIGNAL);

		if (n < 0)
			return -errno;
		b += n;
		len -= (size_t)n;
	}
	return 0;
}

static int vfu_read(void *ctx, uint64_t n)
{
	struct vb *v = ctx;
	uint8_t rep[REP_LEN];

	for (uint64_t i = 0; i < n; i++) {
		int r = write_full(v->vfu, v->req, REQ_LEN);

		if (r == 0)
			r = read_full(v->vfu, rep, REP_LEN);
		if (r < 0)
			return r;
		if (vb_le32_get(rep + 8) & (1u << 5)) {
			v->step = "the worker answered the config read with an error";
			return -(int)vb_le32_get(rep + 12);
		}
	}
	return 0;
}

static int raw_pingpong(void *ctx, uint64_t n)
{
	struct vb *v = ctx;
	uint8_t rep[REP_LEN];

	for (uint64_t i = 0; i < n; i++) {
		int r = write_full(v->raw[0], v->req, REQ_LEN);

		if (r == 0)
			r = read_full(v->raw[0], rep, REP_LEN);
		if (r < 0)
			return r;
	}
	return 0;
}

/* The echo process: reads a request's 32 bytes, answers 36, until the client hangs up. */
static void echo(int fd)
{
	uint8_t b[REP_LEN] = {0};

	while (read_full(fd, b, REQ_LEN) == 0 && write_full(fd, b, REP_LEN) == 0)
		;
	_exit(0);
}

static const char *explain(void *ctx)
{
	return ((struct vb *)ctx)->step;
}

static int start(struct vb *v, const char *worker, const char *image)
{
	int r = -ETIMEDOUT;
	struct vfu_reply rep;

	snprintf(v->dir, sizeof(v->dir), "/tmp/vb-bench-vfu-XXXXXX");
	if (!mkdtemp(v->dir))
		return -errno;
	snprintf(v->sock, sizeof(v->sock), "%s/vfu.sock", v->dir);
	v->step = "starting the worker";
	v->worker = fork();
	if (v->worker < 0)
		return -errno;
	if (v->worker == 0) {
		char img[512], vu[160];

		snprintf(img, sizeof(img), "--device-image=%s", image);
		snprintf(vu, sizeof(vu), "--vfio-user=%s", v->sock);
		execl(worker, worker, img, vu, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 500 && r < 0; i++) {
		r = vfu_cli_connect(v->sock, &v->vfu);
		if (r < 0)
			nanosleep(&(struct timespec){0, 10000000}, NULL);
	}
	if (r < 0)
		return r;
	v->step = "VERSION";
	r = vfu_cli_version(v->vfu, "{\"capabilities\":{\"max_msg_fds\":16}}", &rep);
	if (r < 0)
		return r;
	vfu_reply_free(&rep);
	/* REGION_READ of 4 bytes at config offset 0; the id is the client's, any will do. */
	vb_le16_put(v->req, 1);
	vb_le16_put(v->req + 2, 9);
	vb_le32_put(v->req + 4, REQ_LEN);
	vb_le64_put(v->req + 16, 0);
	vb_le32_put(v->req + 24, 7);
	vb_le32_put(v->req + 28, 4);
	v->step = "the raw stream pair";
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, v->raw) < 0)
		return -errno;
	v->echo = fork();
	if (v->echo < 0)
		return -errno;
	if (v->echo == 0) {
		close(v->raw[0]);
		close(v->vfu);
		echo(v->raw[1]);
	}
	close(v->raw[1]);
	v->raw[1] = -1;
	v->step = NULL;
	return 0;
}

int main(int argc, char **argv)
{
	const char *worker = argc > 1 ? argv[1] : VB_WORKER_PATH;
	const char *image = argc > 2 ? argv[2] : VB_FIXTURES "/edu.img";
	struct vb v = {.worker = -1, .vfu = -1, .raw = {-1, -1}};
	int r = start(&v, worker, image), status = 0;
	struct bench_pair p;
	struct bench_placement pl[BENCH_PLACEMENTS_MAX];
	int npl;

	bench_header("vfio-user (stock VMM protocol) config read vs the stream it travels on");
	p = (struct bench_pair){.name = "vfu_cfg_read_4B",
				.baseline = "raw_stream_pingpong_32B_36B",
				.figure = vfu_read,
				.base = raw_pingpong,
				.ctx = &v,
				.explain = explain};
	if (r < 0) {
		bench_fail(p.name, "%s: %s", v.step ? v.step : "setup", strerror(-r));
		status = 1;
	}
	npl = status == 0 ? bench_placements(pl) : 0;
	if (npl < 0) {
		bench_fail(p.name, "the CPUs this process may use: %s", strerror(-npl));
		status = 1;
	}
	for (int i = 0; i < npl && status == 0; i++) {
		/* The worker and the echo process answer on the same CPU. */
		r = bench_pin_self(pl[i].client);
		if (r == 0)
			r = bench_pin_process(v.worker, pl[i].server);
		if (r == 0)
			r = bench_pin_process(v.echo, pl[i].server);
		if (r < 0) {
			bench_fail(p.name, "pinning to CPUs %d and %d: %s", pl[i].client,
				   pl[i].server, strerror(-r));
			status = 1;
		} else if (bench_run_placed(&p, &pl[i]) < 0) {
			status = 1;
		}
	}
	if (v.raw[0] >= 0)
		close(v.raw[0]); /* the echo process sees the hang-up and exits */
	if (v.echo > 0)
		waitpid(v.echo, NULL, 0);
	if (v.raw[1] >= 0)
		close(v.raw[1]);
	if (v.vfu >= 0)
		close(v.vfu);
	if (v.worker > 0) {
		kill(v.worker, SIGTERM);
		waitpid(v.worker, NULL, 0);
	}
	unlink(v.sock);
	rmdir(v.dir);
	return status;
}
