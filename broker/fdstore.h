/*
 * fdstore: the fds that must outlive the broker process, kept where the next broker finds them.
 *
 * Under systemd that is the service's file descriptor store: each fd is sent with FDSTORE=1,
 * FDNAME= and FDPOLL=0 (sd_pid_notify_with_fds), removed with FDSTOREREMOVE=1 when its object
 * goes, and handed to the next start of the service with LISTEN_FDS/LISTEN_FDNAMES
 * (sd_listen_fds_with_names). Without systemd a re-exec hands the same set to the new image the
 * way systemd would: the fds moved to 3.., LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES set.
 *
 * The store keeps a table of what it holds. The fds in it are borrowed: whoever owns one removes
 * it from the store before closing it. Names follow systemd's FDNAME rules (printable ASCII, no
 * ':', at most 255 bytes); brk_fdstore_name() builds them from a kind and an id such as a BDF,
 * whose ':' become '-'.
 */
#ifndef VB_BROKER_FDSTORE_H
#define VB_BROKER_FDSTORE_H

#include <stdbool.h>
#include <stddef.h>

#define BRK_FDSTORE_NAME_MAX 255

struct brk_fdstore;

/*
 * `systemd`: also keep every fd in the service's fd store (NOTIFY_SOCKET must be set then);
 * otherwise only the table is kept, for a re-exec. `max`: the most fds the store takes (systemd's
 * FileDescriptorStoreMax=, where systemd would drop what goes beyond it), 0 for no limit.
 * Errors: -ENOMEM; -ENOTCONN when `systemd` is asked for without NOTIFY_SOCKET.
 */
int brk_fdstore_new(bool systemd, size_t max, struct brk_fdstore **ret);
/* Forgets the table; closes nothing, removes nothing from systemd's store. NULL allowed. */
void brk_fdstore_free(struct brk_fdstore *s);
bool brk_fdstore_systemd(const struct brk_fdstore *s);
size_t brk_fdstore_count(const struct brk_fdstore *s);

/*
 * Keeps `fd` (borrowed) under `name`, replacing what had that name. Under systemd the fd is in
 * the service's store when this returns 0. Errors: -EINVAL (bad name, fd < 0), -ENOSPC (max
 * reached), -ENOMEM, the notify socket's errors.
 */
int brk_fdstore_put(struct brk_fdstore *s, const char *name, int fd);
/* Keeps `fd` under `name` in the table only, for a re-exec, never in systemd's store: for what
 * systemd hands over anyway (the socket-activated control socket). Errors as put. */
int brk_fdstore_put_local(struct brk_fdstore *s, const char *name, int fd);
/* Forgets `name` (and removes it from systemd's store). -ENOENT when not held. */
int brk_fdstore_remove(struct brk_fdstore *s, const char *name);
/* Makes sure nothing is kept under `name` any more: forgets it if held and, under systemd,
 * always sends FDSTOREREMOVE, for what the last broker stored that this one does not take over
 * (systemd keeps the stored fds across restarts until they are removed or the service stops). */
int brk_fdstore_forget(struct brk_fdstore *s, const char *name);
/* The fd held under `name`, or -ENOENT. */
int brk_fdstore_get(const struct brk_fdstore *s, const char *name);

/* Whether `name` is a valid FDNAME. */
bool brk_fdstore_name_valid(const char *name);
/*
 * "kind" or "kind.id" into buf, every ':' of id written '-' (0000:00:03.0 -> dev.0000-00-03.0).
 * Errors: -ENAMETOOLONG, -EINVAL (a character systemd refuses).
 */
int brk_fdstore_name(char *buf, size_t len, const char *kind, const char *id);
/*
 * The reverse for a name of `kind`: the id with '-' turned back into ':' for a BDF-shaped id
 * (DDDD-BB-DD.F). Returns 0 and fills id, or -ENOENT when name is not of that kind.
 */
int brk_fdstore_name_id(const char *name, const char *kind, char *id, size_t len);

/* ---- what the last broker left: reading it back at start ------------------------------------ */

struct brk_fdstore_entry {
	char *name;
	int fd; /* -1 once taken */
};

struct brk_fdstore_set {
	struct brk_fdstore_entry *e;
	size_t n;
};

/*
 * The fds passed to this process (LISTEN_FDS for this pid; none is not an error), with their
 * names, close-on-exec; unsets LISTEN_* so no child sees them. Errors: -ENOMEM, sd_listen_fds'.
 */
int brk_fdstore_receive(struct brk_fdstore_set **ret);
/* Takes the fd named `name` out of the set (the caller owns it then); -ENOENT when absent. A
 * name passed twice (systemd keeps both) is taken in order. */
int brk_fdstore_set_take(struct brk_fdstore_set *set, const char *name);
/* Closes every fd not taken and frees the set. NULL allowed. */
void brk_fdstore_set_free(struct brk_fdstore_set *set);

/* ---- re-exec ----------------------------------------------------------------------------------
 */

/*
 * Executes `exe_fd` (an open executable: the broker's binary, opened by path so an upgraded one
 * is run) with `argv` and the environment, handing it every fd of the table as systemd would:
 * moved to 3.. in table order, inheritable, LISTEN_PID (this pid: the same across exec),
 * LISTEN_FDS and LISTEN_FDNAMES. Returns only on failure, a negative errno. *moved says whether
 * the fds had been moved by then: if not (a bad exe_fd, -ENOMEM, -EMFILE) every fd is where it
 * was and the broker goes on; if so (execveat failed), fds 3.. were overwritten, the table no
 * longer names its objects and the caller must exit.
 */
int brk_fdstore_exec(const struct brk_fdstore *s, int exe_fd, char *const argv[], bool *moved);

#endif
