# The broker's VFIO-facing core: containers, groups and devices (vfio*.c), DMA mappings (dma.c),
# interrupts (irq.c), sysfs binding (bind.c), the protobuf side of the handoff and of SetIrqs
# (device_pb.c, irq_pb.c), the state record that lets a restarted broker take over
# (record*.c), and the in-guest self-test that drives all of it against a real kernel
# (selftest.c).
add_library(vb_broker_core STATIC
	${CMAKE_CURRENT_SOURCE_DIR}/sys.c
	${CMAKE_CURRENT_SOURCE_DIR}/bind.c
	${CMAKE_CURRENT_SOURCE_DIR}/vfio.c
	${CMAKE_CURRENT_SOURCE_DIR}/vfio_device.c
	${CMAKE_CURRENT_SOURCE_DIR}/device_pb.c
	${CMAKE_CURRENT_SOURCE_DIR}/dma.c
	${CMAKE_CURRENT_SOURCE_DIR}/dma_iova.c
	${CMAKE_CURRENT_SOURCE_DIR}/dma_view.c
	${CMAKE_CURRENT_SOURCE_DIR}/irq.c
	${CMAKE_CURRENT_SOURCE_DIR}/irq_pb.c
	${CMAKE_CURRENT_SOURCE_DIR}/record.c
	${CMAKE_CURRENT_SOURCE_DIR}/record_load.c
	${CMAKE_CURRENT_SOURCE_DIR}/record_codec.c
	${CMAKE_CURRENT_SOURCE_DIR}/record_apply.c
	${CMAKE_CURRENT_SOURCE_DIR}/record_state.c)
target_include_directories(vb_broker_core PUBLIC ${CMAKE_CURRENT_SOURCE_DIR})
target_link_libraries(vb_broker_core PUBLIC vb_base vb_proto)

add_executable(vfio-broker-selftest ${CMAKE_CURRENT_SOURCE_DIR}/selftest.c
	${CMAKE_CURRENT_SOURCE_DIR}/selftest_record.c)
target_link_libraries(vfio-broker-selftest PRIVATE vb_broker_core)
