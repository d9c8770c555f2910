/*
 * supervise: watches one worker process from the broker's libuv loop. A uv_poll_t on the
 * worker's pidfd reports its exit (then it is reaped with waitid(P_PIDFD)); a uv_timer_t paces
 * heartbeats and declares the worker hung when one stays unanswered past the timeout. Ending a
 * worker is pidfd_send_signal(SIGKILL): never a signal by pid number, which could have been
 * reused. What a heartbeat is on the wire is the caller's business (worker.c).
 */
#ifndef VB_BROKER_SUPERVISE_H
#define VB_BROKER_SUPERVISE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

struct brk_sup;

struct brk_sup_hooks {
	/* Time for a heartbeat with this sequence number. Return 0 when it was sent, -ESHUTDOWN
	 * when heartbeats are over; any other error counts as a heartbeat the worker will not
	 * answer. */
	int (*send_heartbeat)(void *ctx, uint64_t seq);
	/* The heartbeat `seq` has waited `waited_ms` >= the timeout. Called once per hang. */
	void (*hung)(void *ctx, uint64_t seq, uint64_t waited_ms);
	/* The process has ended and has been reaped. `code` and `status` are waitid()'s si_code
	 * (CLD_EXITED, CLD_KILLED, CLD_DUMPED) and si_status; code 0 and status -1 when it was not
	 * ours to reap (an adopted worker whose parent was a predecessor: its status went to
	 * init or systemd). Called once. */
	void (*exited)(void *ctx, int code, int status);
};

struct brk_sup_cfg {
	uint32_t interval_ms; /* 0: no heartbeats */
	uint32_t timeout_ms;
	/* The first heartbeat goes at once instead of after an interval (an adopted worker, whose
	 * answer is what tells it is alive and attached). */
	bool heartbeat_now;
	const struct brk_sup_hooks *hooks;
	void *ctx;
};

/* Takes ownership of `pidfd` on success. The process need not be our child: a worker adopted
 * after a restart has been reparented (init, systemd), and is watched through the pidfd alone
 * (readable once it has exited), never waited for. Heartbeat sequence numbers start at a random
 * value, so that an answer meant for another broker instance never matches. Errors: -EINVAL,
 * -ENOMEM, libuv's errors. */
int brk_sup_start(uv_loop_t *loop, pid_t pid, int pidfd, const struct brk_sup_cfg *cfg,
		  struct brk_sup **ret);
/* Answers heartbeat `seq`; stale or unknown sequence numbers are ignored. Returns the round
 * trip in microseconds, or -ESRCH for a stale answer. */
int64_t brk_sup_heartbeat_answered(struct brk_sup *s, uint64_t seq);
/* Stops sending heartbeats (the worker is being removed or already faulted). */
void brk_sup_stop_heartbeats(struct brk_sup *s);
/* SIGKILL through the pidfd. 0, or -ESRCH when it has already exited. */
int brk_sup_kill(struct brk_sup *s);
/* Stops watching and closes the pidfd. If the process has not been reaped it is killed and
 * reaped first, synchronously: a freed supervisor never leaves a zombie of ours behind (one that
 * is not our child is only killed: its parent reaps it). The memory goes once libuv has closed
 * the handles. */
void brk_sup_free(struct brk_sup *s);

#endif
