// policy-watch.h - reload_on_change: notice edits of a policy and the modules beside it
// DESCRIPTION  Watches the policy's folder with inotify for a file written and closed, moved
//              in (how editors and deploy tools save) or removed, when it is the policy file or
//              a .py file. Calls back once the folder has been quiet for kQuiet, so that a save
//              of several files, or an editor's temporary files, give one reload. Packages in
//              subfolders are not watched: reload by hand after changing them.
// SEE ALSO     pool.c++ (what the callback does), README.md "Reloading policy"
#pragma once

#include <kj/async-io.h>
#include <kj/function.h>

#include <string>

namespace mtapy::workerd {

class PolicyWatch {
 public:
  PolicyWatch(const std::string& policy, kj::AsyncIoContext& io, kj::Function<void()> changed);

 private:
  kj::Promise<void> readEvents();
  kj::Promise<void> settle();

  std::string policyName_;
  kj::AsyncIoContext& io_;
  kj::Function<void()> changed_;
  kj::Own<kj::AsyncInputStream> events_;
  kj::TimePoint lastChange_;
  bool settling_ = false;
  kj::Promise<void> reading_ = nullptr, settled_ = nullptr;
};

}  // namespace mtapy::workerd
