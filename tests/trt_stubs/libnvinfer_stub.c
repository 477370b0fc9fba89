/*
 * Stand-ins for the C entry points the TensorRT Python bindings link against
 * (`nm -D --undefined-only tensorrt_bindings/tensorrt.so`): the factory functions of
 * libnvinfer, libnvinfer_plugin, libnvonnxparser and, for 8.x, libnvparsers (the two C++
 * symbols of nvcaffeparser1 / nvuffparser, spelled by their mangled names). Every TensorRT
 * interface is reached through vtables of the objects these return, so defining them is all
 * `import tensorrt` needs to load the module and expose its complete API.
 *
 * Each one aborts: the audit only introspects classes, signatures and enums, and must never
 * call into TensorRT. A call would end the process with SIGABRT and fail the test.
 * Built at test time by tests/trt_stubs/bindings.py (gcc -shared), once per SONAME.
 */
#include <stdlib.h>

#define TRAP { abort(); }

void *createInferBuilder_INTERNAL(void *logger, int version) TRAP
void *createInferRuntime_INTERNAL(void *logger, int version) TRAP
void *createInferRefitter_INTERNAL(void *engine, void *logger, int version) TRAP
void *createNvOnnxParser_INTERNAL(void *network, void *logger, int version) TRAP
void *createNvOnnxParserRefitter_INTERNAL(void *refitter, void *logger, int version) TRAP
void *getPluginRegistry(void) TRAP
void *getBuilderPluginRegistry(int capability) TRAP
int initLibNvInferPlugins(void *logger, const char *lib_namespace) TRAP
int getNvOnnxParserVersion(void) TRAP
/* TensorRT 8.x: nvuffparser::createUffParser(), nvuffparser::FieldMap::FieldMap(...),
   nvcaffeparser1::createCaffeParser(), nvcaffeparser1::shutdownProtobufLibrary() */
void *_ZN11nvuffparser15createUffParserEv(void) TRAP
void _ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi(void *self, const char *name, const void *data, int type,
                                                      int length) TRAP
void *_ZN14nvcaffeparser117createCaffeParserEv(void) TRAP
void _ZN14nvcaffeparser123shutdownProtobufLibraryEv(void) TRAP
