/*
 * bench_idle_static: the memory baseline of bench_mem. A static program (the same glibc, linked
 * statically like vfio-worker) that does nothing: it says it is up on stdout, then waits for a
 * signal. Its Rss/VmHWM is what any static process costs, so the worker's figure over it is
 * what the worker itself adds.
 */
#include <unistd.h>

int main(void)
{
	if (write(1, "r", 1) != 1)
		return 1;
	for (;;)
		pause();
}
