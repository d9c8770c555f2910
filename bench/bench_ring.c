/*
 * bench_ring: what a shared-memory doorbell ring between a VMM and its worker would cost for a
 * trapped access, against the socket it would replace (issue 15, P1+). This measures the
 * mechanism the design in bench/README.md ("P1+: a shared-memory ring") rests on, between two
 * processes of this program, before any of it is built into libvfiobroker and the worker:
 *
 *   ring_pingpong_22B_26B   a request of 22 bytes and a reply of 26 (a trapped 4-byte read's
 *                           sizes) through one slot of a shared memfd page, each side waiting
 *                           for the other with an adaptive spin-then-sleep doorbell: spin on
 *                           the sequence number up to a budget, then sleep in a blocking read of
 *                           an eventfd that the other side writes only when it saw this side
 *                           asleep
 *   vs raw_seqpacket_pingpong_22B_26B   blocking send/recv of the same sizes with an echo
 *                           process
 *
 * in both placements (`_1cpu`, `_2cpu`), and the CPU time the answering side burns:
 *
 *   ring_server_cpu_idle    CPU the answering process uses in a second that starts with one
 *                           request, against one CPU-second (the ratio is the share of a CPU)
 *   ring_server_cpu_1k_per_s  CPU it uses for 1000 requests paced over one second, against the
 *                           socket's echo process doing the same
 *
 * Who spins, and how long, is decided by where the other side ran last (each side writes its
 * CPU, sched_getcpu(), into the page): on the same CPU spinning can never see the other side's
 * answer (it cannot run meanwhile), so both sides sleep at once. On different CPUs the server
 * keeps watching for the next request for RING_SERVER_SPIN_NS after each answer, then sleeps
 * (so an idle ring costs nothing after that window); the client spins up to RING_CLIENT_SPIN_NS
 * for its answer, but only when it found the server awake: a server it had to wake answers
 * after a wake-up, and spinning through that would burn a wake-up's worth of CPU for nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define REQ_LEN	 22
#define REP_LEN	 26
#define SLOT_MAX 64
/* How long the server watches for the next request after an answer: a trapped access comes
 * after the guest has run again (a few microseconds when it walks config space), and this
 * bounds what an access costs the server's CPU. */
#define RING_SERVER_SPIN_NS 20000u
/* How long the client spins for an answer from a server that was awake: the worker's own work
 * for an access is about a microsecond; past this something else is wrong. */
#define RING_CLIENT_SPIN_NS 50000u
#define PACED_PER_S	    1000u
/* Accesses back to back per timed batch, fixed: the steady state of a guest walking config
 * space. (Left to calibration, a loaded machine can make a batch one access, and every access
 * then finds the other side asleep, as the first after a pause does.) */
#define RING_BATCH 200u

/* One direction of the ring: written by one side, read by the other. Its own cache lines, so
 * that the side spinning on `seq` does not contend with the other direction's writes. */
struct ring_dir {
	_Alignas(64) _Atomic uint32_t seq; /* the last message posted */
	_Atomic uint32_t sleeping;	   /* the reader is (about to be) asleep on its eventfd */
	uint32_t len;
	uint8_t data[SLOT_MAX];
};

struct ring_page {
	struct ring_dir req;				     /* VMM -> worker */
	struct ring_dir rep;				     /* worker -> VMM */
	_Alignas(64) _Atomic int32_t client_cpu, server_cpu; /* where each side ran last */
	_Atomic uint32_t stop;
};

struct ring {
	struct ring_page *page;
	int req_efd, rep_efd; /* the server sleeps on req_efd, the client on rep_efd */
	pid_t server;
	uint32_t seq;
	int raw; /* the raw baseline's end; its echo process answers on the other */
	pid_t echo;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* Waits until d->seq is `want`: a check, a spin of up to `spin_ns`, then sleep on `efd` (the
 * poster writes it when it sees `sleeping`). The stores and loads of `sleeping` and `seq` on
 * the two sides are sequentially consistent, so either the poster sees the sleeper or the
 * sleeper sees the seq. */
static int ring_wait(struct ring_dir *d, uint32_t want, int efd, uint32_t spin_ns,
		     _Atomic uint32_t *stop)
{
	uint64_t v;

	if (spin_ns) {
		uint64_t end = bench_now_ns() + spin_ns;

		do {
			for (int i = 0; i < 32; i++) {
				if (atomic_load_explicit(&d->seq, memory_order_acquire) == want)
					return 0;
				cpu_relax();
			}
		} while (bench_now_ns() < end);
	}
	for (;;) {
		atomic_store(&d->sleeping, 1);
		if (atomic_load(&d->seq) == want || (stop && atomic_load(stop))) {
			atomic_store(&d->sleeping, 0);
			return 0;
		}
		if (read(efd, &v, sizeof(v)) < 0 && errno != EINTR)
			return -errno;
		atomic_store(&d->sleeping, 0);
		if (atomic_load_explicit(&d->seq, memory_order_acquire) == want)
			return 0;
		if (stop && atomic_load(stop))
			return 0;
	}
}

/* Whether spinning can see the other side's answer: not while both run on one CPU. */
static bool apart(_Atomic int32_t *mine, _Atomic int32_t *theirs)
{
	int cpu = sched_getcpu();

	atomic_store_explicit(mine, cpu, memory_order_relaxed);
	return cpu != atomic_load_explicit(theirs, memory_order_relaxed);
}

/* Returns 1 when the reader was asleep and had to be woken, 0 when it was awake. */
static int ring_post(struct ring_dir *d, uint32_t seq, const uint8_t *data, uint32_t len, int efd)
{
	uint64_t one = 1;

	memcpy(d->data, data, len);
	d->len = len;
	atomic_store(&d->seq, seq);
	if (!atomic_load(&d->sleeping))
		return 0;
	return write(efd, &one, sizeof(one)) < 0 ? -errno : 1;
}

/* The answering side, as the worker would be: copies the request out of the shared page once
 * (the VMM may change it meanwhile), checks its length, answers with REP_LEN bytes. */
static void ring_server(struct ring *r)
{
	struct ring_page *p = r->page;
	uint8_t req[SLOT_MAX], rep[REP_LEN] = {0};
	uint32_t seq = 0;

	for (;;) {
		uint32_t spin =
		    apart(&p->server_cpu, &p->client_cpu) && seq ? RING_SERVER_SPIN_NS : 0;
		uint32_t len;

		if (ring_wait(&p->req, seq + 1, r->req_efd, spin, &p->stop) < 0)
			_exit(1);
		if (atomic_load(&p->stop))
			_exit(0);
		seq++;
		len = p->req.len;

		if (len > SLOT_MAX)
			len = 0; /* a real worker answers it with an error */
		memcpy(req, p->req.data, len);
		rep[0] = req[0];
		if (ring_post(&p->rep, seq, rep, sizeof(rep), r->rep_efd) < 0)
			_exit(1);
	}
}

static int via_ring(void *ctx, uint64_t n)
{
	struct ring *r = ctx;
	uint8_t req[REQ_LEN] = {0};
	int e;

	for (uint64_t i = 0; i < n; i++) {
		struct ring_page *p = r->page;
		bool spin = apart(&p->client_cpu, &p->server_cpu);

		r->seq++;
		e = ring_post(&p->req, r->seq, req, sizeof(req), r->req_efd);
		if (e >= 0)
			e = ring_wait(&p->rep, r->seq, r->rep_efd,
				      spin && e == 0 ? RING_CLIENT_SPIN_NS : 0, NULL);
		if (e < 0)
			return e;
		if (r->page->rep.len != REP_LEN)
			return -EIO;
	}
	return 0;
}

static int via_raw(void *ctx, uint64_t n)
{
	struct ring *r = ctx;
	uint8_t req[REQ_LEN] = {0}, rep[SLOT_MAX];

	for (uint64_t i = 0; i < n; i++) {
		ssize_t k;

		if (send(r->raw, req, sizeof(req), MSG_NOSIGNAL) < 0)
			return -errno;
		k = recv(r->raw, rep, sizeof(rep), 0);
		if (k < 0)
			return -errno;
		if (k != REP_LEN)
			return -EIO;
	}
	return 0;
}

static void peers_stop(struct ring *r)
{
	uint64_t one = 1;

	if (r->server > 0) {
		atomic_store(&r->page->stop, 1);
		if (write(r->req_efd, &one, sizeof(one)) < 0)
			kill(r->server, SIGKILL);
		waitpid(r->server, NULL, 0);
	}
	bench_echo_stop(r->raw, r->echo);
	r->server = r->echo = 0;
	r->raw = -1;
}

/* Forks the ring's server and the socket's echo process; the caller pins them. */
static int peers_start(struct ring *r)
{
	memset(r->page, 0, sizeof(*r->page));
	r->seq = 0;
	r->page->client_cpu = r->page->server_cpu = -1;
	r->server = fork();
	if (r->server < 0)
		return -errno;
	if (r->server == 0)
		ring_server(r);
	return bench_echo_start(REP_LEN, &r->raw, &r->echo);
}

/* CPU the two answering processes use over about a second: idle, or with PACED_PER_S requests
 * each, paced by sleeps. */
static int cpu_over_second(struct ring *r, bool paced, struct bench_stats *ring_cpu,
			   struct bench_stats *raw_cpu)
{
	uint64_t r0, r1, e0, e1, start, n = 0;
	int e;

	e = bench_cpu_ns(r->server, &r0);
	if (e == 0)
		e = bench_cpu_ns(r->echo, &e0);
	if (e < 0)
		return e;
	/* Idle starts with one request, so that the second includes the spin window after it. */
	if (!paced) {
		e = via_ring(r, 1);
		if (e == 0)
			e = via_raw(r, 1);
		if (e < 0)
			return e;
		n = 1;
	}
	start = bench_now_ns();
	while (bench_now_ns() - start < 1000000000u) {
		if (paced && n < PACED_PER_S) {
			e = via_ring(r, 1);
			if (e == 0)
				e = via_raw(r, 1);
			if (e < 0)
				return e;
			n++;
		}
		bench_sleep_ns(paced ? 1000000000u / PACED_PER_S : 100000000u);
	}
	e = bench_cpu_ns(r->server, &r1);
	if (e == 0)
		e = bench_cpu_ns(r->echo, &e1);
	if (e < 0)
		return e;
	*ring_cpu = (struct bench_stats){
	    .median = (double)(r1 - r0), .p99 = (double)(r1 - r0), .iterations = n};
	*raw_cpu = (struct bench_stats){
	    .median = (double)(e1 - e0), .p99 = (double)(e1 - e0), .iterations = n};
	return 0;
}

static int run_placement(struct ring *r, const struct bench_placement *pl)
{
	char name[64];
	struct bench_stats fig, base;
	int e;

	e = peers_start(r);
	if (e == 0)
		e = bench_pin_self(pl->client);
	if (e == 0)
		e = bench_pin_process(r->server, pl->server);
	if (e == 0)
		e = bench_pin_process(r->echo, pl->server);
	if (e < 0) {
		bench_fail("ring_pingpong_22B_26B", "starting the peers on CPUs %d and %d: %s",
			   pl->client, pl->server, strerror(-e));
		peers_stop(r);
		return e;
	}
	e = bench_run_placed(&(struct bench_pair){.name = "ring_pingpong_22B_26B",
						  .baseline = "raw_seqpacket_pingpong_22B_26B",
						  .figure = via_ring,
						  .base = via_raw,
						  .ctx = r,
						  .per_batch = RING_BATCH},
			     pl);
	if (e == 0 && pl->client != pl->server) {
		/* The spinning costs only show apart: on one CPU nothing spins for long. */
		struct bench_stats second = {.median = 1e9, .p99 = 1e9, .iterations = 1};

		e = cpu_over_second(r, false, &fig, &base);
		if (e == 0) {
			snprintf(name, sizeof(name), "ring_server_cpu_idle%s", pl->suffix);
			bench_report(name, &fig, "one_cpu_second", &second, "ns");
			e = cpu_over_second(r, true, &fig, &base);
		}
		if (e == 0) {
			snprintf(name, sizeof(name), "ring_server_cpu_%uk_per_s%s",
				 PACED_PER_S / 1000, pl->suffix);
			bench_report(name, &fig, "raw_echo_cpu_1k_per_s", &base, "ns");
		} else {
			bench_fail("ring_server_cpu_idle", "%s", strerror(-e));
		}
	}
	peers_stop(r);
	return e;
}

int main(void)
{
	struct bench_placement pl[BENCH_PLACEMENTS_MAX];
	struct ring r = {.raw = -1};
	int failed = 0, npl, e;

	bench_header(
	    "P1+: a shared-memory slot with a spin-then-sleep doorbell against the socket");
	r.page =
	    mmap(NULL, sizeof(*r.page), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	r.req_efd = eventfd(0, EFD_CLOEXEC);
	r.rep_efd = eventfd(0, EFD_CLOEXEC);
	if (r.page == MAP_FAILED || r.req_efd < 0 || r.rep_efd < 0) {
		bench_fail("ring_pingpong_22B_26B", "shared page or eventfds: %s", strerror(errno));
		return 1;
	}
	npl = bench_placements(pl);
	if (npl < 0) {
		bench_fail("ring_pingpong_22B_26B", "the CPUs this process may use: %s",
			   strerror(-npl));
		return 1;
	}
	for (int i = 0; i < npl; i++) {
		e = run_placement(&r, &pl[i]);
		failed |= e < 0;
	}
	return failed;
}
