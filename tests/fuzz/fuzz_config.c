/*
 * Fuzz target: vfio-brokerd's configuration loader (libinih plus the broker's own value, list
 * and range parsing) on arbitrary file contents. Whatever the input, the loader either returns a
 * configuration or a negative errno with a message for the operator; it never crashes, leaks
 * or leaves the message empty.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "fuzz_fail.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct brk_config *cfg = NULL;
	struct vb_err err = {0};
	char path[64];
	int fd = memfd_create("fuzz-config", MFD_CLOEXEC);
	int r;

	if (fd < 0)
		fuzz_fail("set-up: memfd_create: %m");
	/* The loader refuses files others may write, as it should for a real one. */
	if (fchmod(fd, 0600) < 0 || (size && write(fd, data, size) != (ssize_t)size))
		fuzz_fail("set-up: writing the input to the memfd: %m");
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	r = brk_config_load(path, &cfg, &err);
	if (r == 0) {
		if (!cfg)
			fuzz_fail("brk_config_load returned 0 without a config");
		brk_config_free(cfg);
	} else if (r > 0 || r < -4095 || !err.msg[0] || err.code != r || cfg) {
		/* An error must be a negative errno with a message, and no config. */
		fuzz_fail("brk_config_load returned %d (err.code %d, message \"%s\", %s config)", r,
			  err.code, err.msg, cfg ? "a" : "no");
	}
	close(fd);
	return 0;
}
