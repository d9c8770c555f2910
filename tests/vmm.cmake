# vfio-demo-vmm: the VMM of the guest tests and of `make demo`, built on libvfiobroker.
add_executable(vfio-demo-vmm vmm/demo_vmm.c vmm/edu.c vmm/e1000e.c vmm/nvme.c
	vmm/reset.c)
target_link_libraries(vfio-demo-vmm PRIVATE vfiobroker vb_base)

# vfio-probe-vmm: the device-agnostic probe the guest tests run on every device of every topology.
add_executable(vfio-probe-vmm vmm/probe_vmm.c vmm/probe_checks.c)
target_link_libraries(vfio-probe-vmm PRIVATE vfiobroker vb_base)

# vfio-soak: the soak driver (tests/guest/cases/soak.py, make soak), also on libvfiobroker.
find_package(Threads REQUIRED)
add_executable(vfio-soak vmm/soak.c)
target_link_libraries(vfio-soak PRIVATE vfiobroker Threads::Threads)

# vfio-grant-vmm: what a VMM holding an mmap grant can and cannot do, before and after removal.
add_executable(vfio-grant-vmm vmm/grant_vmm.c)
target_link_libraries(vfio-grant-vmm PRIVATE vfiobroker)
