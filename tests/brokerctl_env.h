/*
 * brokerctl_env: what test_client_ctl.c runs vfio-brokerctl against and with: a fake broker (a
 * thread that speaks the control protocol on a socket in a temporary directory and records
 * what it was asked, struct fake), the CLI run as a program with its output and exit code
 * collected, and its --json output parsed back strictly.
 */
#ifndef VB_TESTS_BROKERCTL_ENV_H
#define VB_TESTS_BROKERCTL_ENV_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <json-c/json.h>

#define KNOWN_BDF   "0000:00:03.0"
#define TAKEN_BDF   "0000:00:09.0"
#define WORKER_SOCK "/run/vfio-broker/vm/web1/0000:00:03.0.sock"
/* A VM name no real broker would accept, to prove that any string is escaped correctly. */
#define NASTY_VM            \
	"q\"b\\s\nn\tt\x01" \
	"c\xc3\xa9"

struct fake {
	char dir[64];
	char path[128];
	int listen_fd;
	int stop_fd;
	pthread_t th;
	bool silent;		  /* answer nothing */
	const char *metrics_text; /* METRICS' reply; NULL: the default below */
	/* Records. */
	size_t requests;
	char add_bdf[32], add_vm[80];
	uint32_t add_uid, add_gid, add_maps;
	uint64_t add_pinned;
	bool add_bind, add_mmap;
	char rm_bdf[32];
	uint32_t rm_timeout;
	bool rm_force;
	/* ListDevices: 0 answers as a broker from before paging (two devices, no cursor); else a
	 * paging broker with this many devices, 0000:NN:00.0 ... */
	unsigned paged_n;
	bool paged_stuck;   /* ... whose cursor never moves past the first device */
	unsigned paged_fit; /* ... and whose datagram holds this many statuses (0: all of them) */
	unsigned list_pages;
	uint32_t list_max; /* max_devices of the last ListDevices */
};

/* cmocka setup and teardown: the fake broker listening, its thread serving, and their end. */
int fake_setup(void **state);
int fake_teardown(void **state);

struct result {
	int code;
	char out[16384];
	char err[4096];
};

/* Reads what `fd` has into buf (len so far, NUL-terminated); *open_ false at its end. */
void drain(int fd, char *buf, size_t cap, size_t *len, bool *open_);
/* vfio-brokerctl started with `args` (NULL-terminated), its stdout and stderr in pipes. */
pid_t spawn(const char *const *args, int *out_fd, int *err_fd);
/* Runs vfio-brokerctl with `args` (NULL-terminated) and collects its output and exit code. */
void run_cli(struct result *res, const char *const *args);

#define CLI(res, ...)                                         \
	do {                                                  \
		const char *const a_[] = {__VA_ARGS__, NULL}; \
		run_cli((res), a_);                           \
	} while (0)

/* --json output parsed back strictly (NULL when it is not one RFC 8259 document), and members
 * of it that must be there: an object's `key` (jnull: present and null), a string, a number,
 * an array's element i. */
struct json_object *jparse(const char *text);
struct json_object *jget(struct json_object *o, const char *key);
bool jnull(struct json_object *o, const char *key);
const char *jstr(struct json_object *o, const char *key);
double jnum(struct json_object *o, const char *key);
struct json_object *jat(struct json_object *arr, size_t i);

#endif
