/*
 * server: the VMM protocol (proto/device.proto) of one vfio-worker, on a libuv loop. One VMM at
 * a time; a second connection, or one from a uid other than the owner's or root's, gets its
 * first request answered with an error and is closed. HELLO must come first. Every malformed
 * or out-of-range request gets an error reply and the session goes on. When the VMM goes away
 * its interrupt routes and DMA mappings are dropped through the backend; the device state stays
 * and the next VMM may connect. Replies and events the VMM's socket cannot take now wait in the
 * channel's bounded send queue; a VMM that lets it overflow is disconnected: the loop never
 * waits for a VMM. A VMM that hung up is noticed before a new connection is judged, so one
 * that reconnects right after closing gets in.
 *
 * Trusts: the device and backend it is given. Distrusts: everything a VMM sends.
 */
#ifndef VB_WKR_SERVER_H
#define VB_WKR_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "backend.h"
#include "ipc.h"
#include "server_cfg.h"
#include "wkr.h"

struct wkr_server;

int wkr_server_new(const struct wkr_server_cfg *cfg, struct wkr_server **ret);
/* Closes the VMM session (without the backend teardown: the process is ending) and every
 * handle; `closed` runs once libuv has let go of them. */
void wkr_server_close(struct wkr_server *s, void (*closed)(void *data), void *data);

/* The device's bars_changed callback: tells the VMM (EVENT_BARS_CHANGED with every BAR). */
void wkr_server_bars_changed(void *server, uint16_t command);

/* Asks the VMM to let go of the device (EVENT_REMOVAL_REQUESTED) and calls `done` once: with
 * true on REMOVAL_ACK, false on timeout, disconnect, or when no VMM is connected (at once).
 * -EBUSY while another removal is pending. */
int wkr_server_removal(struct wkr_server *s, uint32_t timeout_ms,
		       void (*done)(void *data, bool acked), void *data);

bool wkr_server_connected(const struct wkr_server *s);
/* Holds every VMM request (socket and ring) until let go of: see wkr_serve_hold(). */
void wkr_server_hold(struct wkr_server *s, bool held);
/* Connected, or a connection is being admitted: the other protocol's VMM is refused. */
bool wkr_server_busy(const struct wkr_server *s);
uint64_t wkr_server_requests(const struct wkr_server *s);

#endif
