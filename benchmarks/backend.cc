// backend.cc: the raw-bytes gRPC runtime the cri-proxy benchmark calls.
//
// usage: backend <socket path> <reply dir> <events per streaming call> [v1alpha2]
// Each file <reply dir>/<Method>.bin is the serialized reply of
// /runtime.v1.RuntimeService/<Method> (and of the same method under
// runtime.v1alpha2, whose shared messages are wire-identical); with "v1alpha2"
// only under runtime.v1alpha2, as a legacy runtime: a v1 client then needs the
// proxy's translation. GetContainerEvents sends its reply
// that many times per call; every other method sends it once. The request
// is read and ignored, so no generated code is needed.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>

namespace {

constexpr int kMaxMessage = 16 << 20;  // what the kubelet allows
const std::string kService = "/runtime.v1.RuntimeService/";
const std::string kOldService = "/runtime.v1alpha2.RuntimeService/";
const std::string kStreamMethod = kService + "GetContainerEvents";

grpc::ByteBuffer ReadBuffer(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  grpc::Slice slice(bytes.str());
  return grpc::ByteBuffer(&slice, 1);
}

// Reads the request, then writes the reply `writes` times and finishes OK.
class Reactor : public grpc::ServerGenericBidiReactor {
 public:
  Reactor(const grpc::ByteBuffer* reply, int writes)
      : reply_(reply), left_(writes) {
    if (reply_ == nullptr) {
      Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no reply file"));
      return;
    }
    StartRead(&request_);
  }
  void OnReadDone(bool ok) override { ok ? WriteNext() : Cancelled(); }
  void OnWriteDone(bool ok) override { ok ? WriteNext() : Cancelled(); }
  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    out_ = *reply_;  // shares the slices, copies no bytes
    if (--left_ > 0) {
      StartWrite(&out_);
    } else {
      StartWriteAndFinish(&out_, grpc::WriteOptions(), grpc::Status::OK);
    }
  }
  void Cancelled() { Finish(grpc::Status::CANCELLED); }

  const grpc::ByteBuffer* reply_;
  int left_;
  grpc::ByteBuffer request_, out_;
};

class Service : public grpc::CallbackGenericService {
 public:
  Service(const std::string& dir, int events, bool old_only) : events_(events) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      grpc::ByteBuffer reply = ReadBuffer(entry.path());
      if (!old_only) replies_[kService + entry.path().stem().string()] = reply;
      replies_[kOldService + entry.path().stem().string()] = reply;
    }
  }
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* ctx) override {
    auto it = replies_.find(ctx->method());
    const grpc::ByteBuffer* reply = it == replies_.end() ? nullptr : &it->second;
    return new Reactor(reply, ctx->method() == kStreamMethod ? events_ : 1);
  }

 private:
  int events_;
  std::map<std::string, grpc::ByteBuffer> replies_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4 && !(argc == 5 && std::string(argv[4]) == "v1alpha2")) {
    std::cerr << "usage: backend <socket path> <reply dir> <events per call> [v1alpha2]\n";
    return 2;
  }
  Service service(argv[2], std::stoi(argv[3]), argc == 5);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(std::string("unix:") + argv[1],
                           grpc::InsecureServerCredentials());
  builder.SetMaxReceiveMessageSize(kMaxMessage);
  builder.SetMaxSendMessageSize(kMaxMessage);
  builder.RegisterCallbackGenericService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) return 1;
  std::cout << "ready" << std::endl;
  server->Wait();
}
