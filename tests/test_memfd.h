/*
 * test_memfd: the memfd a test hands over as memory (a VMM's RAM, a DMA source, a ring page),
 * created here with the seals it should carry, so that every test builds it the same way and a
 * failure to create one fails the test where it happens.
 */
#ifndef VB_TESTS_TEST_MEMFD_H
#define VB_TESTS_TEST_MEMFD_H

#include <fcntl.h>
#include <stddef.h>
#include <sys/mman.h>
#include <unistd.h>

/* `size` bytes, sealable, sealed with `seals` (0: none yet; F_SEAL_SHRINK is what DMA needs).
 * The caller includes cmocka.h. */
static inline int test_memfd(size_t size, unsigned seals)
{
	int fd = memfd_create("test-memfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	if (seals)
		assert_int_equal(fcntl(fd, F_ADD_SEALS, seals), 0);
	return fd;
}

#endif
