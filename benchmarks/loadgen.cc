// loadgen.cc: closed-loop gRPC load generator for the cri-proxy benchmark.
//
// usage: loadgen <target> <method> <request file> <callers> <start> <end>
//                <latency out file> [stream] [rate=N]
// Each caller issues one call after another on a shared channel (one HTTP/2
// connection) from now until <end>; calls started in [<start>, <end>) (Unix
// epoch seconds) count. Prints "calls errors messages"; writes each counted
// call's latency in nanoseconds, one a line. With "stream" each call is read
// as a server stream until its status. Raw bytes: no generated code.
// With rate=N the load is open-loop instead: from <start> to <end> one call
// is started every 1/N s (paced by the calls started, not those answered, so
// a slow answer never turns into a burst), however many are still under way;
// <callers> is then ignored. Unary calls only.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::system_clock;
constexpr int kMaxMessage = 16 << 20;  // what the kubelet allows

struct Config {
  std::string method;
  grpc::ByteBuffer request;
  Clock::time_point start, end;
  bool stream = false;
  double rate = 0;  // calls per second, open loop; 0: closed-loop callers
};

Clock::time_point FromEpoch(const char* seconds) {
  auto since = std::chrono::duration<double>(std::stod(seconds));
  return Clock::time_point(std::chrono::duration_cast<Clock::duration>(since));
}

grpc::ByteBuffer ReadBuffer(const char* path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream bytes;
  bytes << in.rdbuf();
  grpc::Slice slice(bytes.str());
  return grpc::ByteBuffer(&slice, 1);
}

// Counts down as callers finish, so main can wait for all of them.
class Latch {
 public:
  explicit Latch(int n) : n_(n) {}
  void CountDown() {
    std::lock_guard<std::mutex> lock(mu_);
    if (--n_ == 0) cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return n_ == 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_;
};

// One closed-loop caller: when a call completes, the next one starts.
class Caller {
 public:
  Caller(grpc::GenericStub* stub, const Config* config, Latch* latch)
      : stub_(stub), config_(config), latch_(latch) {}
  void Issue();
  void Done(const grpc::Status& status, int messages);

  std::vector<int64_t> latencies;
  int64_t errors = 0, messages = 0;

 private:
  grpc::GenericStub* stub_;
  const Config* config_;
  Latch* latch_;
  std::unique_ptr<grpc::ClientContext> ctx_;
  grpc::ByteBuffer response_;
  Clock::time_point began_;
  friend class StreamCall;
};

// A server-streaming call: send the request, read replies until the status.
class StreamCall : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  explicit StreamCall(Caller* caller) : caller_(caller) {
    caller_->stub_->PrepareBidiStreamingCall(caller_->ctx_.get(), caller_->config_->method,
                                             grpc::StubOptions(), this);
    StartWriteLast(&caller_->config_->request, grpc::WriteOptions());
    StartRead(&reply_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    ++messages_;
    StartRead(&reply_);
  }
  void OnDone(const grpc::Status& status) override {
    Caller* caller = caller_;
    int messages = messages_;
    delete this;
    caller->Done(status, messages);
  }

 private:
  Caller* caller_;
  grpc::ByteBuffer reply_;
  int messages_ = 0;
};

void Caller::Issue() {
  ctx_ = std::make_unique<grpc::ClientContext>();
  ctx_->set_deadline(Clock::now() + std::chrono::seconds(60));  // as kubelet sends
  began_ = Clock::now();
  if (config_->stream) {
    new StreamCall(this);
    return;
  }
  response_.Clear();
  stub_->UnaryCall(ctx_.get(), config_->method, grpc::StubOptions(), &config_->request,
                   &response_, [this](grpc::Status status) { Done(status, 1); });
}

void Caller::Done(const grpc::Status& status, int received) {
  auto now = Clock::now();
  if (began_ >= config_->start && began_ < config_->end) {
    if (status.ok()) {
      latencies.push_back(std::chrono::nanoseconds(now - began_).count());
      messages += received;
    } else {
      ++errors;
    }
  }
  if (now < config_->end) {
    Issue();
  } else {
    latch_->CountDown();
  }
}

// One call of the open-loop pacer: deletes itself when it completes.
class PacedCall {
 public:
  struct Totals {
    std::mutex mu;
    std::vector<int64_t> latencies;
    int64_t errors = 0;
    int64_t outstanding = 0;
    std::condition_variable idle;
    std::string first_error;
  };
  PacedCall(grpc::GenericStub* stub, const Config* config, Totals* totals) : totals_(totals) {
    ctx_.set_deadline(Clock::now() + std::chrono::seconds(60));
    began_ = Clock::now();
    stub->UnaryCall(&ctx_, config->method, grpc::StubOptions(), &config->request, &response_,
                    [this](grpc::Status status) { Done(status); });
  }

 private:
  void Done(const grpc::Status& status) {
    int64_t ns = std::chrono::nanoseconds(Clock::now() - began_).count();
    Totals* totals = totals_;
    delete this;
    std::lock_guard<std::mutex> lock(totals->mu);
    if (status.ok()) {
      totals->latencies.push_back(ns);
    } else if (totals->errors++ == 0) {
      totals->first_error = std::to_string(status.error_code()) + " " + status.error_message();
    }
    if (--totals->outstanding == 0) totals->idle.notify_all();
  }

  Totals* totals_;
  grpc::ClientContext ctx_;
  grpc::ByteBuffer response_;
  Clock::time_point began_;
};

// Starts calls at config.rate per second from start to end, then waits for the last answer.
void Paced(grpc::GenericStub* stub, const Config& config, PacedCall::Totals* totals) {
  std::this_thread::sleep_until(config.start);
  const auto start = config.start;
  int64_t started = 0;
  for (auto now = start; now < config.end; now = Clock::now()) {
    double seconds = std::chrono::duration<double>(now - start).count();
    int64_t due = static_cast<int64_t>(seconds * config.rate) + 1 - started;
    if (due > 0) {
      {
        std::lock_guard<std::mutex> lock(totals->mu);
        totals->outstanding += due;
      }
      for (int64_t i = 0; i < due; ++i) new PacedCall(stub, &config, totals);
      started += due;
    }
    auto next = start + std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double>(started / config.rate));
    std::this_thread::sleep_until(std::min(next, config.end));
  }
  std::unique_lock<std::mutex> lock(totals->mu);
  totals->idle.wait(lock, [totals] { return totals->outstanding == 0; });
}

std::shared_ptr<grpc::Channel> Connect(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessage);
  args.SetMaxSendMessageSize(kMaxMessage);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // own connection per process
  auto channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  channel->WaitForConnected(Clock::now() + std::chrono::seconds(10));
  return channel;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 8) {
    std::cerr << "usage: loadgen <target> <method> <request file> <callers>"
                 " <start> <end> <latency out file> [stream] [rate=N]\n";
    return 2;
  }
  Config config{argv[2], ReadBuffer(argv[3]), FromEpoch(argv[5]), FromEpoch(argv[6])};
  for (int i = 8; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "stream") config.stream = true;
    if (arg.rfind("rate=", 0) == 0) config.rate = std::stod(arg.substr(5));
  }
  int count = std::stoi(argv[4]);
  grpc::GenericStub stub(Connect(argv[1]));
  if (config.rate > 0) {
    PacedCall::Totals totals;
    Paced(&stub, config, &totals);
    std::ofstream out(argv[7]);
    for (int64_t ns : totals.latencies) out << ns << '\n';
    if (totals.errors) std::cerr << "first error: " << totals.first_error << std::endl;
    std::cout << totals.latencies.size() << ' ' << totals.errors << ' ' << totals.latencies.size()
              << std::endl;
    return 0;
  }
  Latch latch(count);
  std::vector<std::unique_ptr<Caller>> callers;
  for (int i = 0; i < count; ++i) {
    callers.push_back(std::make_unique<Caller>(&stub, &config, &latch));
    callers.back()->Issue();
  }
  latch.Wait();

  std::ofstream out(argv[7]);
  int64_t calls = 0, errors = 0, messages = 0;
  for (const auto& caller : callers) {
    for (int64_t ns : caller->latencies) out << ns << '\n';
    calls += caller->latencies.size();
    errors += caller->errors;
    messages += caller->messages;
  }
  std::cout << calls << ' ' << errors << ' ' << messages << std::endl;
}
