/*
 * dispatch: the one shape of a request table. The three servers (the broker's control socket,
 * the broker's side of each worker channel, the worker's VMM server) each keep a table of
 * entries that start with a struct vb_req {type, allowed-when, name} followed by their own typed
 * handler; finding a request's entry and checking it against the session's state happen here,
 * once, the way OpenSSH's monitor does it: anything unknown or out of order is the caller's to
 * refuse (most end the peer's session).
 */
#ifndef VB_BASE_DISPATCH_H
#define VB_BASE_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "base.h"

struct vb_req {
	uint16_t type;
	unsigned when;	  /* bits of the server's own session states in which it is allowed */
	const char *name; /* for messages and metrics labels */
};

enum vb_req_check {
	VB_REQ_ALLOWED,
	VB_REQ_UNKNOWN, /* no entry: returns NULL */
	VB_REQ_NOT_NOW, /* an entry, not allowed in `state`: returns the entry (for its name) */
};

/* The entry of `type` in `table` (n entries `stride` bytes apart, each starting with a struct
 * vb_req), and whether `state` allows it, in *check. */
const struct vb_req *vb_req_lookup(const void *table, size_t n, size_t stride, uint16_t type,
				   unsigned state, enum vb_req_check *check);

/* vb_req_lookup() on a table array whose entries have their struct vb_req as member `req`,
 * returning the entry's own type. */
#define VB_REQ_LOOKUP(table, type, state, check)                                       \
	((__typeof__(&(table)[0]))vb_req_lookup(                                       \
	    (table),                                                                   \
	    ARRAY_SIZE(table) +                                                        \
		0 * sizeof(char[offsetof(__typeof__((table)[0]), req) == 0 ? 1 : -1]), \
	    sizeof((table)[0]), (type), (state), (check)))

#endif
