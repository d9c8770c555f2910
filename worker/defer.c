/*
 * defer: the bookkeeping of a reply that waits for the backend (see defer.h). Trusts its owner
 * and the backend to pair every add with one complete, and never to complete from inside a call.
 */
#include <stddef.h>
#include <string.h>

#include "backend.h"
#include "defer.h"

static void collect(const struct wkr_backend *b, struct wkr_defer *d)
{
	if (b && b->ops->collect)
		b->ops->collect(b->ctx, d);
}

void wkr_defer_begin(struct wkr_defer *d, const struct wkr_backend *b, bool fresh)
{
	if (fresh) {
		d->err = 0;
		d->why = (struct vb_err){0};
	}
	d->b = b;
	d->pending = 0;
	d->waiting = false;
	collect(b, d);
}

bool wkr_defer_end(struct wkr_defer *d)
{
	collect(d->b, NULL);
	d->waiting = d->pending > 0;
	return d->waiting;
}

void wkr_defer_fail(struct wkr_defer *d, int err, const struct vb_err *why)
{
	if (d->err < 0 || err >= 0)
		return;
	d->err = err;
	if (why && why->msg[0])
		d->why = *why;
	else
		vb_errf(&d->why, err, "%s", strerror(-err));
	d->why.code = err;
}

void wkr_defer_cancel(struct wkr_defer *d)
{
	if (d->pending && d->b && d->b->ops->forget)
		d->b->ops->forget(d->b->ctx, d);
	d->pending = 0;
	d->waiting = false;
}

void wkr_defer_add(struct wkr_defer *d)
{
	d->pending++;
}

void wkr_defer_complete(struct wkr_defer *d, int err, const struct vb_err *why)
{
	if (err < 0)
		wkr_defer_fail(d, err, why);
	if (d->pending && --d->pending == 0 && d->waiting) {
		d->waiting = false;
		d->done(d);
	}
}
