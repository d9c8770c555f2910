/*
 * err: how an error travels with its message. A function that can explain a failure takes a
 * `struct vb_err *` (NULL allowed), returns the negative errno and, through vb_errf(), leaves
 * the same code and a one-line human explanation (never parsed) in the record; the caller logs
 * it or puts it on the wire. One record type for every process, instead of `char *why` buffers
 * of unstated size.
 */
#ifndef VB_BASE_ERR_H
#define VB_BASE_ERR_H

/* Longest message a record carries, terminating NUL included: room for a configuration
 * file's FILE:LINE prefix; the wire's error text is shorter and takes what fits. */
#define VB_ERR_MAX 512

struct vb_err {
	int code;
	char msg[VB_ERR_MAX];
};

/* Fills `err` (when non-NULL) and returns `code`, so that `return vb_errf(err, -EINVAL, ...)`
 * reads naturally. `code` must be a negative errno. */
int vb_errf(struct vb_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The message of `err`, or strerror(-code) when the callee left none. */
const char *vb_err_msg(const struct vb_err *err, int code);

#endif
