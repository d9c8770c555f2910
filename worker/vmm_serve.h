/*
 * vmm_serve: what the two VMM servers (server.c for proto/device.proto, vfu_server.c for
 * vfio-user) do alike around their protocol, so that a VMM meets one set of rules whichever it
 * speaks: the listening socket and its bounded accept loop; one VMM session per server and its
 * poll handle; admission (one VMM across both protocols through `busy`, then the backend's
 * vmm_admit and the VMM's mmap grant); a session whose VMM already hung up is settled before
 * the next connection is judged, so that a VMM reconnecting right after closing gets in; the
 * same teardown however a VMM leaves (its interrupt routes, DMA mappings and grant dropped, the
 * device state kept); the removal timer; closing every handle.
 *
 * The protocol brings its session (open, serve, drain, free), how it turns a connection away
 * and how it asks a VMM to let go. Trusts: the device, the backend and the protocol's ops.
 * Distrusts: the VMM.
 */
#ifndef VB_WKR_VMM_SERVE_H
#define VB_WKR_VMM_SERVE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "backend.h"
#include "defer.h"
#include "wkr.h"

struct wkr_serve;
struct wkr_serve_ops;

/* What the core keeps of a protocol's session, embedded in the protocol's session struct. */
struct wkr_serve_session {
	uv_poll_t poll;
	struct wkr_serve *sv;
	const struct wkr_serve_ops *ops; /* the session may outlive `sv` while libuv closes both */
	int fd;	      /* the connection's socket: the protocol's session owns it */
	bool ended;   /* wkr_serve_end() ran; the session is freed once libuv lets go */
	bool writing; /* the poll handle waits for writability too */
	bool paused;  /* a reply waits for the backend: no request is read meanwhile */
	bool held;    /* the server is held (wkr_serve_hold): no request is read meanwhile */
	bool reading; /* the poll handle waits for requests */
	bool shut;    /* the VMM shut its sending side while not read: its hang-up is not watched */
	int watched;  /* the libuv events the poll handle waits for */
	/* The request whose reply waits for the backend (defer.h); the protocol sets its `done`.
	 * wkr_serve_end() cancels it. */
	struct wkr_defer defer;
};

struct wkr_serve_ops {
	/* Makes the session of an admitted connection on `fd` (non-blocking, close-on-exec),
	 * which it takes on success only. */
	int (*open)(void *proto, int fd, struct wkr_serve_session **ret);
	/* Frees what open made, the connection and its fd included (the poll handle is closed). */
	void (*free)(struct wkr_serve_session *v);
	/* The session's socket is ready (libuv's `events`): serve a bounded number of messages,
	 * ending the session with wkr_serve_end() once the VMM is gone. */
	void (*serve)(struct wkr_serve_session *v, int events);
	/* The VMM has hung up: serve what it left and end the session. Returns with the session
	 * still running only when it cannot end yet (a half-closed VMM still taking replies). */
	void (*drain)(struct wkr_serve_session *v);
	/* Turns a connection away with `err` (-EBUSY: another VMM holds the device; -EPERM: not
	 * admitted; -ETIMEDOUT: the broker, which admits VMMs, did not answer: it may be
	 * restarting), answering it where the protocol can; takes `fd`. */
	void (*refuse)(void *proto, int fd, int err);
	/* Asks the VMM to let go of the device; an error ends the removal unacknowledged. */
	int (*ask_removal)(void *proto, uint32_t timeout_ms);
	/* Optional: a hold has ended (wkr_serve_hold); take up what the protocol held back
	 * besides the socket, which is read again by itself (the native ring). */
	void (*resumed)(struct wkr_serve_session *v);
};

struct wkr_serve_cfg {
	uv_loop_t *loop;
	int listen_fd;	     /* listening; taken over on success (made non-blocking) */
	int sock_type;	     /* what listen_fd must be: SOCK_SEQPACKET or SOCK_STREAM */
	struct wkr_dev *dev; /* borrowed */
	struct wkr_backend backend;
	uid_t owner_uid; /* for the backend's vmm_admit */
	/* The device's worker eventfds are serviced by this server. */
	bool service_irqs;
	/* The device's interrupt mode while a session runs (emulated otherwise). */
	enum wkr_irq_mode irq_mode;
	/* A VMM that disconnects while a removal is pending has let go (vfio-user, whose VMM
	 * answers a removal request by leaving); otherwise only the protocol's ack counts. */
	bool hangup_acks_removal;
	/* Another protocol's VMM holds the device: a connection is refused with -EBUSY. */
	bool (*busy)(void *data);
	void *busy_data;
	const struct wkr_serve_ops *ops;
	void *proto; /* the protocol's server, handed to its ops */
	/* Frees `proto` once wkr_serve_close() has closed every handle. */
	void (*release)(void *proto);
};

struct wkr_serve {
	struct wkr_serve_cfg cfg;
	uv_poll_t listen_poll;
	uv_poll_t irq_poll;
	uv_timer_t removal_timer;
	int open_handles;
	bool irq_open; /* irq_poll is a handle to close */
	bool closing;
	void (*closed)(void *data);
	void *closed_data;

	struct wkr_serve_session *vmm; /* the one session, or NULL */
	bool held;		       /* wkr_serve_hold(): sessions read nothing */
	/* The connection whose admission the backend is deciding (-1: none); a VMM's HELLO waits
	 * unread in it meanwhile, and other connections are turned away as busy. */
	int admit_fd;
	struct wkr_defer admit_defer;
	struct wkr_admit admit;
	pid_t vmm_pid;
	uid_t vmm_uid;
	/* Admitted, and not told to the backend yet: that waits until the session's first
	 * requests (the HELLO) are answered, so that the VMM's handshake does not wait for the
	 * backend's bookkeeping (a broker round of VMM_STATE, a log line, the pool's refill). */
	bool announce;
	int grant_fd; /* the VMM's mmap grant while it is connected, else -1 */
	uint64_t requests;
	bool removal_pending;
	void (*removal_done)(void *data, bool acked);
	void *removal_data;
};

/* Checks the listening socket and starts accepting. On failure the listening socket and the
 * protocol's server stay the caller's and nothing else is left for it to free. */
int wkr_serve_new(const struct wkr_serve_cfg *cfg, struct wkr_serve **ret);
/* Ends the session (without the backend teardown: the process is ending), ends a pending
 * removal unacknowledged and closes every handle and the listening socket; once libuv has let
 * go of them, `release` frees the protocol's server and `closed` runs. NULL is ignored. */
void wkr_serve_close(struct wkr_serve *sv, void (*closed)(void *data), void *data);

/* The VMM left (or must): closes the session and drops what it set up. Not while one of the
 * session's handlers runs. */
void wkr_serve_end(struct wkr_serve *sv);
/* Makes the session's poll handle wait for writability too, or no longer; false when the
 * handle could not be changed (the caller ends the session). */
bool wkr_serve_watch(struct wkr_serve_session *v, bool writable);
/* Stops reading the VMM's requests while one of its replies waits for the backend, or reads
 * them again (what it sent meanwhile waits in its socket); false as for wkr_serve_watch(). */
bool wkr_serve_pause(struct wkr_serve_session *v, bool paused);
/* Holds (or lets go of) every VMM request of this server, the session's and any session
 * admitted meanwhile, whatever its own pause: the device's interrupt routing is being sent to
 * the broker again (broker_link.c), and an access served before it is back could raise an
 * interrupt that no route carries. A session that cannot be held or let go of ends. */
void wkr_serve_hold(struct wkr_serve *sv, bool held);
/* The session reads requests: neither its reply waits nor its server is held. */
static inline bool wkr_serve_reading(const struct wkr_serve_session *v)
{
	return !v->paused && !v->held;
}
/* A VMM holds the device or is being admitted: another connection is refused as busy. */
bool wkr_serve_busy(const struct wkr_serve *sv);

/* Asks the VMM to let go (ops->ask_removal) and calls `done` once: with true on
 * wkr_serve_removal_finish(sv, true) (or a hangup when hangup_acks_removal), false on timeout,
 * disconnect, failure to ask, or when no VMM is connected (at once). -EBUSY while another
 * removal is pending. */
int wkr_serve_removal(struct wkr_serve *sv, uint32_t timeout_ms,
		      void (*done)(void *data, bool acked), void *data);
void wkr_serve_removal_finish(struct wkr_serve *sv, bool acked);

#endif
