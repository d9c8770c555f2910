/*
 * base: ARRAY_SIZE, container_of and the `_cleanup_` helpers that let an error path return without
 * unwinding by hand (systemd's pattern: a variable declared `_cleanup_close_ int fd = -1;` is
 * closed when it goes out of scope; TAKE_FD()/TAKE_PTR() hand it on and leave -1/NULL behind).
 */
#ifndef VB_BASE_H
#define VB_BASE_H

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* 0, or a compile error when `a` is a pointer rather than an array. */
#define VB__MUST_BE_ARRAY(a) \
	(sizeof(char[1 - 2 * __builtin_types_compatible_p(__typeof__(a), __typeof__(&(a)[0]))]) - 1)

/* Elements of an array; a pointer argument does not compile. */
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]) + VB__MUST_BE_ARRAY(a))

/* The struct of type `type` whose member `member` is at `ptr` (a handle embedded in its owner). */
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void vb__freep(void *p)
{
	free(*(void **)p);
}

static inline void vb__closep(const int *fd)
{
	if (*fd >= 0)
		close(*fd);
}

static inline void vb__fclosep(FILE **f)
{
	if (*f)
		fclose(*f);
}

#define _cleanup_free_	 _cleanup_(vb__freep)
#define _cleanup_close_	 _cleanup_(vb__closep)
#define _cleanup_fclose_ _cleanup_(vb__fclosep)

/* Defines `func##p`, which calls `func` (NULL-safe, like free) on a `type *` going out of scope:
 * `VB_DEFINE_CLEANUP(struct brk_config, brk_config_free)` then
 * `_cleanup_(brk_config_freep) struct brk_config *c = NULL;`. */
#define VB_DEFINE_CLEANUP(type, func)        \
	static inline void func##p(type **p) \
	{                                    \
		func(*p);                    \
	}                                    \
	struct vb__cleanup_##func##_needs_a_semicolon

/* The value of `var`, which is left empty (-1 or NULL) so that its cleanup does nothing. */
#define TAKE_FD(var)                \
	({                          \
		int vb__fd = (var); \
		(var) = -1;         \
		vb__fd;             \
	})
#define TAKE_PTR(var)                          \
	({                                     \
		__typeof__(var) vb__p = (var); \
		(var) = NULL;                  \
		vb__p;                         \
	})

#endif
