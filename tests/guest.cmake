# Guest end-to-end tests (tests/guest/): programs that run inside the QEMU test guest. Every
# file in build/bin goes into the guest at /opt/vfio-broker/bin; tests/guest/run.sh boots it.

# guest_vfio_available BDF...: proves the VFIO container interface works for those devices.
add_executable(guest_vfio_available ${CMAKE_CURRENT_SOURCE_DIR}/guest/guest_vfio_available.c)


# vfio-user-edu SOCKET: our own vfio-user client driving edu through a brokered worker.
add_executable(vfio-user-edu ${CMAKE_CURRENT_SOURCE_DIR}/guest/vfio-user-edu.c
	${CMAKE_CURRENT_SOURCE_DIR}/vfu/vfu_client.c)
target_include_directories(vfio-user-edu PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/vfu ${CMAKE_CURRENT_SOURCE_DIR}/vmm)
target_link_libraries(vfio-user-edu PRIVATE vb_base)

# guest_vmm_stall SOCKET: a VMM that stops reading, then reconnects quickly (issue 14).
add_executable(guest_vmm_stall ${CMAKE_CURRENT_SOURCE_DIR}/guest/guest_vmm_stall.c)
target_link_libraries(guest_vmm_stall PRIVATE vb_ipc)

# guest_kill_at PID POINT: SIGKILL of the broker inside a given VFIO ioctl (issue 12).
add_executable(guest_kill_at ${CMAKE_CURRENT_SOURCE_DIR}/guest/guest_kill_at.c)
