# vfio-demo-vmm: the VMM of the guest tests and of `make demo`, built on libvfiobroker.
add_executable(vfio-demo-vmm vmm/demo_vmm.c vmm/edu.c vmm/e1000e.c vmm/nvme.c
	vmm/reset.c)
target_link_libraries(vfio-demo-vmm PRIVATE vfiobroker vb_base)
