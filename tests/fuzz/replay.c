/*
 * replay: runs a fuzz target's checked-in corpus as an ordinary cmocka test, so that the regular
 * build and the sanitizer build exercise every fuzz target without libFuzzer. Built once per
 * target with VB_FUZZ_NAME and VB_FUZZ_CORPUS (the corpus directory) defined.
 */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Inputs above libFuzzer's usual -max_len are not corpus material. */
#define INPUT_MAX (1u << 20)

static size_t read_input(const char *path, uint8_t *buf)
{
	FILE *f = fopen(path, "rbe");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, INPUT_MAX, f);
	assert_int_equal(ferror(f), 0);
	fclose(f);
	return n;
}

static void replay_corpus(void **state)
{
	uint8_t *buf = malloc(INPUT_MAX);
	char path[PATH_MAX];
	struct dirent *e;
	DIR *d = opendir(VB_FUZZ_CORPUS);
	int n = 0;

	assert_non_null(buf);
	assert_non_null(d);
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", VB_FUZZ_CORPUS, e->d_name);
		/* The target aborts on anything wrong; a crash fails this test binary. */
		assert_int_equal(LLVMFuzzerTestOneInput(buf, read_input(path, buf)), 0);
		n++;
	}
	closedir(d);
	free(buf);
	/* An empty or missing corpus would make this test pass without testing anything. */
	assert_true(n >= 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    {"test_fuzz_" VB_FUZZ_NAME "_corpus_replays_cleanly", replay_corpus, NULL, NULL, NULL},
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
