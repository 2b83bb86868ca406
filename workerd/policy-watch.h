// policy-watch.h - reload_on_change: notice edits of a policy and the modules beside it
// DESCRIPTION  Watches the policy's folder with inotify for a file written and closed, moved
//              in (how editors and deploy tools save) or removed, when it is the policy file or
//              a .py file. Calls back once the folder has been quiet for kQuiet, so that a save
//              of several files, or an editor's temporary files, give one reload. Packages in
//              subfolders are not watched: reload by hand after changing them.
//              Symlinks on the folder's path (current -> releases/42, as release deploys
//              switch code) are followed: every folder on the way is watched for the next
//              name being made anew, and then the folder's watch moves to the new target.
// SEE ALSO     pool.c++ (what the callback does), README.md "Reloading policy"
#pragma once

#include <kj/async-io.h>
#include <kj/function.h>

#include <string>
#include <utility>
#include <vector>

namespace mtapy::workerd {

class PolicyWatch {
 public:
  PolicyWatch(const std::string& policy, kj::AsyncIoContext& io, kj::Function<void()> changed);

 private:
  void watch();
  bool relevant(int wd, const std::string& name) const;
  kj::Promise<void> readEvents();
  kj::Promise<void> settle();

  std::string folder_, policyName_;
  int fd_ = -1;  // owned by events_
  int folderWd_ = -1;
  // Each folder on the way to folder_, links resolved: (its watch, the next name on the way).
  std::vector<std::pair<int, std::string>> steps_;
  kj::AsyncIoContext& io_;
  kj::Function<void()> changed_;
  kj::Own<kj::AsyncInputStream> events_;
  kj::TimePoint lastChange_;
  bool settling_ = false;
  kj::Promise<void> reading_ = nullptr, settled_ = nullptr;
};

}  // namespace mtapy::workerd
