// Build facts baked in at configure time, for node info, reports and VM metadata.
// Defined in a generated build_info.cc (src/util/build_info.cc.in), so that a
// new commit recompiles that one small file, not every file that prints the
// version (a header constant made each of their unity batches miss ccache).
#pragma once
namespace corral::util::build {
extern const char* const kProduct;
extern const char* const kVendor;
extern const char* const kVersion;
extern const char* const kCommit;
extern const char* const kBuildType;
extern const char* const kCompiler;
extern const char* const kCompilerVersion;
}  // namespace corral::util::build
