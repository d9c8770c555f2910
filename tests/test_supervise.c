/*
 * test_supervise: the heartbeat judgement of broker/supervise.c on a real child process and a
 * real libuv loop. A worker answers through a pipe, which the loop reads with a uv_poll_t as the
 * broker reads a worker's channel. The loop is made to stand still on purpose (the broker's loop
 * does while one large DMA map pins): a stall is the test's action here, not a wait for
 * something, so its length does not make the test depend on timing; every wait for an outcome
 * is bounded by TEST_HANG_MS.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "supervise.h"
#include "test_wait.h"

#define INTERVAL_MS 20
#define TIMEOUT_MS  60
#define STALL_MS    (5 * TIMEOUT_MS)

struct fixture {
	uv_loop_t loop;
	uv_poll_t answers; /* the "channel": the worker's answers, read by the loop */
	uv_timer_t guard;  /* TEST_HANG_MS */
	int pipefd[2];
	struct brk_sup *sup;
	pid_t pid;
	bool answer;	 /* the worker answers its heartbeats */
	bool stall_once; /* the loop stands still right after the next heartbeat went out */
	unsigned int sent, answered, hung, exited, want_answers;
	uint64_t hung_waited_ms;
	bool timed_out;
};

static void stall(void)
{
	struct timespec ts = {.tv_sec = STALL_MS / 1000, .tv_nsec = (STALL_MS % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int on_send(void *ctx, uint64_t seq)
{
	struct fixture *f = ctx;

	f->sent++;
	/* The worker's answer is in the channel at once... */
	if (f->answer)
		assert_int_equal(write(f->pipefd[1], &seq, sizeof(seq)), sizeof(seq));
	/* ...but the broker's loop does something long before it reads again. */
	if (f->stall_once) {
		f->stall_once = false;
		stall();
	}
	return 0;
}

static void on_hung(void *ctx, uint64_t seq, uint64_t waited_ms)
{
	struct fixture *f = ctx;

	(void)seq;
	f->hung++;
	f->hung_waited_ms = waited_ms;
	uv_stop(&f->loop);
}

static void on_exited(void *ctx, int code, int status)
{
	struct fixture *f = ctx;

	(void)code;
	(void)status;
	f->exited++;
}

static const struct brk_sup_hooks hooks = {
    .send_heartbeat = on_send,
    .hung = on_hung,
    .exited = on_exited,
};

static void on_answer(uv_poll_t *h, int status, int events)
{
	struct fixture *f = h->data;
	uint64_t seq;

	(void)status;
	(void)events;
	assert_int_equal(read(f->pipefd[0], &seq, sizeof(seq)), sizeof(seq));
	if (brk_sup_heartbeat_answered(f->sup, seq) >= 0)
		f->answered++;
	if (f->answered >= f->want_answers)
		uv_stop(&f->loop);
}

static void on_guard(uv_timer_t *t)
{
	struct fixture *f = t->data;

	f->timed_out = true;
	uv_stop(&f->loop);
}

static void closed(uv_handle_t *h)
{
	(void)h;
}

/* A child that waits to be killed, supervised with heartbeats every INTERVAL_MS. */
static void start(struct fixture *f, bool answer)
{
	struct brk_sup_cfg cfg = {
	    .interval_ms = INTERVAL_MS,
	    .timeout_ms = TIMEOUT_MS,
	    .heartbeat_now = true,
	    .hooks = &hooks,
	    .ctx = f,
	};
	pid_t pid;
	int pidfd;

	memset(f, 0, sizeof(*f));
	f->answer = answer;
	f->stall_once = true;
	f->want_answers = 4;
	assert_int_equal(uv_loop_init(&f->loop), 0);
	assert_int_equal(pipe2(f->pipefd, O_CLOEXEC | O_NONBLOCK), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* A failed assertion leaves no orphan behind (holding the runner's stdout). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	f->pid = pid;
	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	assert_true(pidfd >= 0);
	assert_int_equal(uv_poll_init(&f->loop, &f->answers, f->pipefd[0]), 0);
	f->answers.data = f;
	assert_int_equal(uv_poll_start(&f->answers, UV_READABLE, on_answer), 0);
	assert_int_equal(uv_timer_init(&f->loop, &f->guard), 0);
	f->guard.data = f;
	assert_int_equal(uv_timer_start(&f->guard, on_guard, TEST_HANG_MS, 0), 0);
	assert_int_equal(brk_sup_start(&f->loop, pid, pidfd, &cfg, &f->sup), 0);
}

static void finish(struct fixture *f)
{
	int st;
	pid_t r;

	brk_sup_free(f->sup); /* kills the child, reaping it when it can */
	uv_close((uv_handle_t *)&f->answers, closed);
	uv_close((uv_handle_t *)&f->guard, closed);
	assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	close(f->pipefd[0]);
	close(f->pipefd[1]);
	/* Reaped by the supervisor, or killed by it and reaped here: never left running. */
	r = waitpid(f->pid, &st, 0);
	if (r == f->pid)
		assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	else
		assert_int_equal(errno, ECHILD);
}

/*
 * The answer to a heartbeat reached the channel while the broker's loop stood still for five
 * timeouts. When the loop turns again its timer runs before the channel is read: the worker must
 * not be called hung for the broker's own stall (before the fix it was, on the first tick).
 */
static void test_supervise_own_loop_stall_answered_worker_not_hung(void **state)
{
	struct fixture f;

	(void)state;
	start(&f, true);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	assert_false(f.timed_out);
	assert_int_equal(f.hung, 0);
	assert_true(f.answered >= f.want_answers);
	assert_true(f.sent >= f.answered);
	finish(&f);
}

/* A worker that really does not answer is still declared hung after such a stall. */
static void test_supervise_own_loop_stall_silent_worker_still_hung(void **state)
{
	struct fixture f;

	(void)state;
	start(&f, false);
	uv_run(&f.loop, UV_RUN_DEFAULT);
	assert_false(f.timed_out);
	assert_int_equal(f.hung, 1);
	assert_int_equal(f.answered, 0);
	assert_true(f.hung_waited_ms >= TIMEOUT_MS);
	finish(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_supervise_own_loop_stall_answered_worker_not_hung),
	    cmocka_unit_test(test_supervise_own_loop_stall_silent_worker_still_hung),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
